"""A minimal facilitator *server* that settles on the dev chain (tests only): ``/verify``, ``/settle``, ``/supported``.

Lets the example apps run as real processes configured only by ``X402_FACILITATOR_URL``, exercising the
real HTTP facilitator clients. Stand-in for the team's ``python -m x402_middleware.facilitator`` until it lands.
Run: ``uvicorn --factory tests.examples.facilitator_app:create`` with ``X402_RPC_URL``, ``X402_FACILITATOR_KEY``.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests._chain_facilitator import ChainFacilitator
from x402_middleware.models import PaymentRequirements, parse_payment_payload
from x402_middleware.networks import Asset, get_network
from x402_middleware.verify import verify_exact_evm


def _parse(body: dict[str, Any]) -> tuple[Any, PaymentRequirements]:
    payload = parse_payment_payload(body["paymentPayload"])
    req = body["paymentRequirements"]
    extra = req.get("extra") or {}
    requirements = PaymentRequirements(
        get_network(req["network"]), Asset(req["asset"], extra["name"], extra["version"]),
        int(req.get("amount") or req["maxAmountRequired"]), req["payTo"], req["maxTimeoutSeconds"])
    return payload, requirements


def create() -> Starlette:
    chain = ChainFacilitator(os.environ["X402_RPC_URL"], os.environ["X402_FACILITATOR_KEY"], 84532)

    async def verify(request: Request) -> JSONResponse:
        payload, requirements = _parse(await request.json())
        result = verify_exact_evm(payload, requirements)
        return JSONResponse(result.to_wire() if result else {"isValid": False, "invalidReason": "unsupported"})

    async def settle(request: Request) -> JSONResponse:
        result = await chain.settle(*_parse(await request.json()))
        return JSONResponse(result.to_wire())

    async def supported(request: Request) -> JSONResponse:
        return JSONResponse(await chain.supported())

    return Starlette(routes=[Route("/verify", verify, methods=["POST"]), Route("/settle", settle, methods=["POST"]),
                             Route("/supported", supported)])
