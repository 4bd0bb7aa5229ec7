"""Django settings for the middleware tests (in-process, and real servers via DJANGO_SETTINGS_MODULE)."""

from __future__ import annotations

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.django.urls"
INSTALLED_APPS = ["x402_middleware.django"]
MIDDLEWARE = ["x402_middleware.django.PaymentMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True
LOGGING_CONFIG = None

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
X402 = {
    "ROUTES": {
        "GET /paid": "$0.001",
        "/status/{code}": "$0.001",
        "GET /boom": "$0.001",
        "GET /stream": "$0.001",
        "GET /astream": "$0.001",
    },
    "PAY_TO": PAY_TO,
    "NETWORK": "eip155:84532",
    "FACILITATOR": "tests._facilitator_double.FakeFacilitator",
    "SYNC_FACILITATOR": "tests._sync_facilitator_double.SyncFakeFacilitator",
}
