"""A Flask app with one free and one paid route, configured from the environment.

Run::

    X402_PAY_TO=0xYourAddress flask --app examples.flask_app run        # or: gunicorn examples.flask_app:app

Environment: ``X402_FACILITATOR_URL`` (default https://x402.org/facilitator), ``X402_PAY_TO``,
``X402_NETWORK`` (default ``eip155:84532``, Base Sepolia) and ``X402_PRICE`` (default ``$0.001``).
The WSGI middleware uses a blocking facilitator client: no event loop per request.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from x402_middleware import Payment, PaymentWSGIMiddleware, SyncFacilitator, SyncHTTPFacilitator

DEV_PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's public dev account #1: set X402_PAY_TO


def create_app(*, facilitator: SyncFacilitator | None = None, pay_to: str | None = None) -> Flask:
    env = os.environ
    app = Flask(__name__)

    @app.get("/free")
    def free() -> dict[str, Any]:
        return {"message": "this one is free"}

    @app.get("/weather")
    def weather() -> dict[str, Any]:
        payment: Payment = request.environ["x402.payment"]
        return {"forecast": "sunny", "paid_by": payment.payer, "amount": payment.amount}

    # Wrapping app.wsgi_app keeps app.test_client(), app.run() and the CLI working (as with werkzeug's ProxyFix).
    app.wsgi_app = PaymentWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        routes={"GET /weather": env.get("X402_PRICE", "$0.001")},
        pay_to=pay_to or env.get("X402_PAY_TO", DEV_PAY_TO),
        network=env.get("X402_NETWORK", "eip155:84532"),
        facilitator=facilitator or SyncHTTPFacilitator(env.get("X402_FACILITATOR_URL", "https://x402.org/facilitator")),
    )
    return app


app = create_app()
