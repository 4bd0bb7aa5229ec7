"""Settings of the example Django project: the x402 app, its middleware and ONE ``X402`` dict, from the environment.

Run (from the repository root)::

    X402_PAY_TO=0xYourAddress python examples/django_app/manage.py runserver          # WSGI, sync mode
    X402_PAY_TO=0xYourAddress uvicorn examples.django_app.asgi:application            # ASGI, async mode

``manage.py check`` validates ``X402`` (ids ``x402.E001`` ...).
"""

from __future__ import annotations

import os

env = os.environ

SECRET_KEY = env.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = env.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = env.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS = ["x402_middleware.django"]
MIDDLEWARE = ["x402_middleware.django.PaymentMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True

X402 = {
    "ROUTES": {"GET /weather": env.get("X402_PRICE", "$0.001")},
    "PAY_TO": env.get("X402_PAY_TO", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),  # anvil dev account #1
    "NETWORK": env.get("X402_NETWORK", "eip155:84532"),
    # One URL serves both modes: HTTPFacilitator under ASGI, SyncHTTPFacilitator under WSGI.
    "FACILITATOR_URL": env.get("X402_FACILITATOR_URL", "https://x402.org/facilitator"),
}
