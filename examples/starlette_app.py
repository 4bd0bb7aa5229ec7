"""A Starlette app with one free and one paid route, configured from the environment.

Run::

    X402_PAY_TO=0xYourAddress uvicorn examples.starlette_app:app

Environment: ``X402_FACILITATOR_URL`` (default https://x402.org/facilitator), ``X402_PAY_TO``,
``X402_NETWORK`` (default ``eip155:84532``, Base Sepolia) and ``X402_PRICE`` (default ``$0.001``).
Pay with any x402 client, e.g. ``httpx.get(url + "/weather", auth=X402Auth(private_key))``.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from x402_middleware import Facilitator, HTTPFacilitator, Payment, PaymentMiddleware

DEV_PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's public dev account #1: set X402_PAY_TO


async def free(request: Request) -> JSONResponse:
    return JSONResponse({"message": "this one is free"})


async def weather(request: Request) -> JSONResponse:
    payment: Payment = request.scope["x402.payment"]
    return JSONResponse({"forecast": "sunny", "paid_by": payment.payer, "amount": payment.amount})


def create_app(*, facilitator: Facilitator | None = None, pay_to: str | None = None) -> Starlette:
    env = os.environ
    return Starlette(
        routes=[Route("/free", free), Route("/weather", weather)],
        middleware=[
            Middleware(
                PaymentMiddleware,
                routes={"GET /weather": env.get("X402_PRICE", "$0.001")},
                pay_to=pay_to or env.get("X402_PAY_TO", DEV_PAY_TO),
                network=env.get("X402_NETWORK", "eip155:84532"),
                facilitator=facilitator
                or HTTPFacilitator(env.get("X402_FACILITATOR_URL", "https://x402.org/facilitator")),
            )
        ],
    )


app = create_app()
