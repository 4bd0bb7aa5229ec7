"""Apps for the interop tests, served by real uvicorn processes (``tests._interop_apps:ours`` / ``:official``).

Both read the dev chain from the environment: ``X402_RPC_URL``, ``X402_FACILITATOR_KEY``, ``X402_PAY_TO``
(network Base Sepolia, ``eip155:84532``, token at the canonical USDC address).
"""

from __future__ import annotations

import os
from typing import Any

NETWORK = "eip155:84532"
PRICE = "$0.001"


def ours() -> Any:
    """A Starlette app protected by OUR PaymentMiddleware, settling on the dev chain."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from x402_middleware import PaymentMiddleware
    from x402_middleware.facilitator import OnChainFacilitator

    async def weather(request: Request) -> JSONResponse:
        payment = request.scope["x402.payment"]
        return JSONResponse({"temp": 21, "paid_by": payment.payer, "amount": payment.amount})

    facilitator = OnChainFacilitator(os.environ["X402_RPC_URL"], [os.environ["X402_FACILITATOR_KEY"]], network=NETWORK)
    app = Starlette(routes=[Route("/weather", weather), Route("/legacy/weather", weather)])
    protected = PaymentMiddleware(
        app,
        routes={"GET /weather": PRICE, "GET /legacy/weather": PRICE},
        pay_to=os.environ["X402_PAY_TO"],
        network=NETWORK,
        facilitator=facilitator,
    )

    async def v1_only_under_legacy(scope: Any, receive: Any, send: Any) -> None:
        """``/legacy/*`` answers like a v1-only server: the 402 keeps its v1 JSON body but loses the v2 header."""
        if scope["type"] != "http" or not scope["path"].startswith("/legacy/"):
            await protected(scope, receive, send)
            return

        async def send_without_v2_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message["headers"] if k.lower() != b"payment-required"]
            await send(message)

        await protected(scope, receive, send_without_v2_header)

    return v1_only_under_legacy


class LocalFacilitatorClient:
    """The official SDK's FacilitatorClient protocol over an in-process ``x402Facilitator`` (no HTTP hop)."""

    def __init__(self, facilitator: Any) -> None:
        self._facilitator = facilitator

    async def verify(self, payload: Any, requirements: Any) -> Any:
        return await self._facilitator.verify(payload, requirements)

    async def settle(self, payload: Any, requirements: Any) -> Any:
        return await self._facilitator.settle(payload, requirements)

    def get_supported(self) -> Any:
        return self._facilitator.get_supported()


def official() -> Any:
    """A FastAPI app protected by the OFFICIAL x402 2.25.0 middleware and facilitator, settling on the dev chain."""
    from x402 import x402Facilitator
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme

    signer = FacilitatorWeb3Signer(private_key=os.environ["X402_FACILITATOR_KEY"], rpc_url=os.environ["X402_RPC_URL"])
    facilitator = x402Facilitator().register([NETWORK], ExactEvmFacilitatorScheme(signer))
    return _official_app(LocalFacilitatorClient(facilitator))


def official_remote() -> Any:
    """The OFFICIAL x402 2.25.0 FastAPI middleware using OUR facilitator server (``X402_FACILITATOR_URL``) over HTTP."""
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient

    return _official_app(HTTPFacilitatorClient(FacilitatorConfig(url=os.environ["X402_FACILITATOR_URL"])))


def _official_app(facilitator_client: Any) -> Any:
    """``GET /weather`` for ``PRICE`` behind the official middleware, verifying and settling via ``facilitator_client``."""
    from fastapi import FastAPI
    from x402 import x402ResourceServer
    from x402.http.middleware.fastapi import PaymentMiddlewareASGI
    from x402.http.types import PaymentOption, RouteConfig
    from x402.mechanisms.evm.exact import ExactEvmServerScheme

    server = x402ResourceServer(facilitator_client)
    server.register(NETWORK, ExactEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]  # the SDK's own typing
    routes = {
        "GET /weather": RouteConfig(
            accepts=[PaymentOption(scheme="exact", pay_to=os.environ["X402_PAY_TO"], price=PRICE, network=NETWORK)],
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


#: What ``ours_upto``'s routes charge of the signed maximum (``OURS_UPTO_MAX``): a whole response and a stream.
OURS_UPTO_MAX, UPTO_CHARGE, UPTO_STREAM_CHARGE = "$0.01", 4321, 1234


def ours_upto() -> Any:
    """OUR PaymentMiddleware with ``upto`` routes (the app reports the charge), settling on the dev chain."""
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from x402_middleware import PaymentMiddleware, RouteConfig, charge
    from x402_middleware.facilitator import OnChainFacilitator

    async def usage(request: Request) -> Response:
        charge(request, UPTO_CHARGE)
        return JSONResponse({"paid_by": request.scope["x402.payment"].payer, "charged": UPTO_CHARGE})

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
            charge(request, UPTO_STREAM_CHARGE)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    facilitator = OnChainFacilitator(os.environ["X402_RPC_URL"], [os.environ["X402_FACILITATOR_KEY"]], network=NETWORK)
    route = RouteConfig(price=OURS_UPTO_MAX, scheme="upto", extra={"facilitatorAddress": facilitator.address})
    return PaymentMiddleware(
        Starlette(routes=[Route("/usage", usage), Route("/stream", stream)]),
        routes={"GET /usage": route, "GET /stream": route},
        pay_to=os.environ["X402_PAY_TO"],
        network=NETWORK,
        facilitator=facilitator,
    )


UPTO_MAX = "$0.005"  # 5000 atomic units of the 6-decimal test USDC


def official_upto_remote() -> Any:
    """The OFFICIAL x402 2.25.0 FastAPI middleware offering ``upto`` (at most ``UPTO_MAX``) for ``GET /tokens?used=N``,
    settling N through OUR facilitator server (``X402_FACILITATOR_URL``) via the SDK's ``Settlement-Overrides``; it
    declares the ``eip2612GasSponsoring`` extension."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from x402 import x402ResourceServer
    from x402.extensions.eip2612_gas_sponsoring import declare_eip2612_gas_sponsoring_extension
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.middleware.fastapi import PaymentMiddlewareASGI, set_settlement_overrides
    from x402.http.types import PaymentOption, RouteConfig
    from x402.mechanisms.evm.upto import UptoEvmServerScheme

    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=os.environ["X402_FACILITATOR_URL"])))
    server.register(NETWORK, UptoEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]  # the SDK's own typing
    option = PaymentOption(scheme="upto", pay_to=os.environ["X402_PAY_TO"], price=UPTO_MAX, network=NETWORK)
    routes = {
        "GET /tokens": RouteConfig(
            accepts=[option],
            description="Tokens",
            mime_type="application/json",
            extensions=declare_eip2612_gas_sponsoring_extension(),  # payers without a Permit2 allowance may permit
        )
    }
    app = FastAPI()

    @app.get("/tokens")
    def tokens(used: int) -> Any:  # the actual charge comes from the query, as an app would compute it
        response = JSONResponse({"used": used})
        set_settlement_overrides(response, {"amount": str(used)})
        return response

    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)
    return app
