"""Apps for tests/test_deep_json_servers.py, served by real uvicorn processes (``tests._deep_json_apps:...``)."""

from __future__ import annotations

import os
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from x402_middleware import PaymentMiddleware, RouteConfig
from x402_middleware.pricing import PaymentRequest


def _price(request: PaymentRequest) -> str:
    body: Any = request.body
    return "$0.002" if isinstance(body, dict) and body.get("big") else "$0.001"


async def _chat(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _recursion_limit(request: Request) -> JSONResponse:
    return JSONResponse({"recursion_limit": sys.getrecursionlimit(), "eth_account": "eth_account" in sys.modules})


def priced_body_app() -> PaymentMiddleware:
    """A Starlette app behind the real :class:`OnChainFacilitator` (which imports eth-account) with a ``price_body``
    route, ``POST /chat``; ``GET /recursion-limit`` is free. The dev chain comes from ``RPC_URL``, ``FACILITATOR_KEY``,
    ``NETWORK`` and ``PAY_TO``."""
    from x402_middleware.facilitator import OnChainFacilitator

    # The condition being defended: a raised recursion limit (py_ecc < 8, imported by eth-account, raised it on import;
    # any library may), under which the C JSON parser overflows the C stack on deep input.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
    app = Starlette(routes=[Route("/chat", _chat, methods=["POST"]), Route("/recursion-limit", _recursion_limit)])
    return PaymentMiddleware(
        app,
        routes={"POST /chat": RouteConfig(price=_price, price_body=True)},
        pay_to=os.environ["PAY_TO"],
        network=os.environ["NETWORK"],
        facilitator=OnChainFacilitator(
            os.environ["RPC_URL"], [os.environ["FACILITATOR_KEY"]], network=os.environ["NETWORK"]
        ),
        max_pricing_body=int(os.environ.get("MAX_PRICING_BODY", str(1 << 20))),
    )
