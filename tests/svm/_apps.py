"""Apps for the Solana interop tests, served by real uvicorn processes; the chain is the test's LiteSVM dev chain.

Environment: ``X402_SOLANA_RPC_URL``, ``X402_SOLANA_PAY_TO``, and ``X402_SOLANA_FEE_PAYER_KEY`` (ours: a base58
fee-payer secret) or ``X402_FACILITATOR_URL`` (the official app: OUR facilitator server).
"""

from __future__ import annotations

import os
from typing import Any

NETWORK = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
PRICE = "$0.001"


def ours() -> Any:
    """A Starlette app protected by OUR PaymentMiddleware, settling on Solana with our SolanaFacilitator."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from x402_middleware import PaymentMiddleware
    from x402_middleware.facilitator import SolanaFacilitator
    from x402_middleware.schemes.svm.exact import set_fee_payer

    async def weather(request: Request) -> JSONResponse:
        payment = request.scope["x402.payment"]
        return JSONResponse({"temp": 21, "paid_by": payment.payer, "amount": payment.amount})

    facilitator = SolanaFacilitator(
        os.environ["X402_SOLANA_RPC_URL"], [os.environ["X402_SOLANA_FEE_PAYER_KEY"]], network=NETWORK
    )
    set_fee_payer(NETWORK, facilitator.fee_payer_addresses[0])
    app = Starlette(routes=[Route("/weather", weather)])
    return PaymentMiddleware(
        app,
        routes={"GET /weather": PRICE},
        pay_to=os.environ["X402_SOLANA_PAY_TO"],
        network=NETWORK,
        facilitator=facilitator,
    )


def official_remote() -> Any:
    """The OFFICIAL x402 2.25.0 FastAPI middleware (exact SVM server scheme) using OUR facilitator server over HTTP."""
    from fastapi import FastAPI
    from x402 import x402ResourceServer
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.middleware.fastapi import PaymentMiddlewareASGI
    from x402.http.types import PaymentOption, RouteConfig
    from x402.mechanisms.svm.exact import ExactSvmServerScheme

    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=os.environ["X402_FACILITATOR_URL"])))
    server.register(NETWORK, ExactSvmServerScheme())  # type: ignore[arg-type]  # the SDK's own typing
    routes = {
        "GET /weather": RouteConfig(
            accepts=[
                PaymentOption(scheme="exact", pay_to=os.environ["X402_SOLANA_PAY_TO"], price=PRICE, network=NETWORK)
            ],
            description="Weather",
            mime_type="application/json",
        )
    }
    app = FastAPI()

    @app.get("/weather")
    def weather() -> dict[str, Any]:
        return {"temp": 21}

    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)
    return app
