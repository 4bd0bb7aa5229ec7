"""A FastAPI app with one free and one paid route, configured from the environment.

Run::

    X402_PAY_TO=0xYourAddress uvicorn examples.fastapi_app:app

Environment: ``X402_FACILITATOR_URL`` (default https://x402.org/facilitator), ``X402_PAY_TO``,
``X402_NETWORK`` (default ``eip155:84532``, Base Sepolia) and ``X402_PRICE`` (default ``$0.001``).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from x402_middleware import Facilitator, HTTPFacilitator, Payment, PaymentMiddleware, RouteConfig

DEV_PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's public dev account #1: set X402_PAY_TO


def create_app(*, facilitator: Facilitator | None = None, pay_to: str | None = None) -> FastAPI:
    env = os.environ
    app = FastAPI(title="x402 FastAPI example")

    @app.get("/free")
    async def free() -> dict[str, Any]:
        return {"message": "this one is free"}

    @app.get("/weather")
    async def weather(request: Request) -> dict[str, Any]:
        payment: Payment = request.scope["x402.payment"]
        return {"forecast": "sunny", "paid_by": payment.payer, "amount": payment.amount}

    app.add_middleware(
        PaymentMiddleware,
        routes={"GET /weather": RouteConfig(price=env.get("X402_PRICE", "$0.001"), description="Weather forecast")},
        pay_to=pay_to or env.get("X402_PAY_TO", DEV_PAY_TO),
        network=env.get("X402_NETWORK", "eip155:84532"),
        facilitator=facilitator or HTTPFacilitator(env.get("X402_FACILITATOR_URL", "https://x402.org/facilitator")),
    )
    return app


app = create_app()
