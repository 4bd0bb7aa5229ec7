"""x402 benchmark fixtures: apps under test, zero-latency facilitators, and a payer that pre-signs payments.

These are benchmark fixtures, not test doubles of behaviour: the facilitators answer "valid" and "settled"
at once so that what is timed is the middleware, not a chain. Served apps are uvicorn factories::

    .venv/bin/python -m uvicorn benchmarks._fixtures:bare --factory
    X402_FACILITATOR_URL=http://127.0.0.1:PORT .venv/bin/python -m uvicorn benchmarks._fixtures:ours --factory
    .venv/bin/python -m uvicorn benchmarks._fixtures:ours_instant --factory
    X402_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m uvicorn benchmarks._fixtures:ours_instant_redis --factory
    .venv/bin/python -m uvicorn benchmarks._fixtures:ours_instant_journal --factory
    X402_FACILITATOR_URL=http://127.0.0.1:PORT .venv/bin/python -m uvicorn benchmarks._fixtures:official --factory
    .venv/bin/python -m uvicorn benchmarks._fixtures:facilitator_double --factory

All the apps serve the same handlers: ``GET /paid`` (a tiny JSON body, priced :data:`PRICE` when protected)
and ``GET /free`` (never priced).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import httpx

from x402_middleware import SettleResult, VerifyResult, X402Auth
from x402_middleware.models import PaymentPayload, PaymentRequirements

#: anvil's first dev account: a public test key that holds nothing real.
PAYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
NETWORK = "eip155:84532"  # Base Sepolia: a default USDC asset is registered for it in both SDKs
PRICE = "$0.001"
PAID_PATH = "/paid"
FREE_PATH = "/free"
_TX = "0x" + "ab" * 32


# -- the app under test -----------------------------------------------------------------------------------------
def bare() -> Any:
    """The unprotected Starlette app: the floor every middleware is measured against."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def paid(request: Request) -> JSONResponse:
        return JSONResponse({"temp": 21})

    async def free(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(PAID_PATH, paid), Route(FREE_PATH, free)])


def ours(facilitator: Any = None) -> Any:
    """:func:`bare` behind OUR ``PaymentMiddleware``; facilitator over HTTP at ``X402_FACILITATOR_URL`` by default."""
    from x402_middleware import HTTPFacilitator, PaymentMiddleware

    if facilitator is None:
        facilitator = HTTPFacilitator(os.environ["X402_FACILITATOR_URL"])
    return PaymentMiddleware(
        bare(), routes={f"GET {PAID_PATH}": PRICE}, pay_to=PAY_TO, network=NETWORK, facilitator=facilitator
    )


def ours_instant() -> Any:
    """:func:`ours` with the in-process :class:`InstantFacilitator`: the middleware's own cost over HTTP, no hop."""
    return ours(InstantFacilitator())


def ours_instant_redis() -> Any:
    """:func:`ours_instant` on a :class:`RedisStore` at ``X402_REDIS_URL``: what a shared store adds per request."""
    from x402_middleware import PaymentMiddleware
    from x402_middleware.stores.redis import RedisStore

    store = RedisStore.from_url(os.environ["X402_REDIS_URL"], prefix=f"bench-{os.getpid()}:")
    return PaymentMiddleware(
        bare(),
        routes={f"GET {PAID_PATH}": PRICE},
        pay_to=PAY_TO,
        network=NETWORK,
        facilitator=InstantFacilitator(),
        store=store,
    )


def ours_instant_journal() -> Any:
    """:func:`ours_instant` with a :class:`SQLiteJournal` (``synchronous=FULL``, group commit) in a temporary file,
    or at ``X402_JOURNAL_PATH``: what a durable settlement journal adds per request."""
    import tempfile

    from x402_middleware import PaymentMiddleware
    from x402_middleware.journal import SQLiteJournal

    path = os.environ.get("X402_JOURNAL_PATH") or os.path.join(tempfile.mkdtemp(prefix="x402-bench-"), "journal.db")
    return PaymentMiddleware(
        bare(),
        routes={f"GET {PAID_PATH}": PRICE},
        pay_to=PAY_TO,
        network=NETWORK,
        facilitator=InstantFacilitator(),
        journal=SQLiteJournal(path),
    )


def official() -> Any:
    """:func:`bare` behind the OFFICIAL x402 2.25 ``PaymentMiddlewareASGI``, using its ``HTTPFacilitatorClient``."""
    from x402 import x402ResourceServer
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.middleware.fastapi import PaymentMiddlewareASGI
    from x402.http.types import PaymentOption, RouteConfig
    from x402.mechanisms.evm.exact import ExactEvmServerScheme

    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=os.environ["X402_FACILITATOR_URL"])))
    server.register(NETWORK, ExactEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]  # the SDK's typing
    routes = {
        f"GET {PAID_PATH}": RouteConfig(
            accepts=[PaymentOption(scheme="exact", pay_to=PAY_TO, price=PRICE, network=NETWORK)],
            description="Weather",
            mime_type="application/json",
        )
    }
    app = bare()
    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)
    return app


# -- zero-latency facilitators ----------------------------------------------------------------------------------
class InstantFacilitator:
    """In-process :class:`~x402_middleware.Facilitator` that approves and "settles" everything at once."""

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        return VerifyResult(True, payer=payload.payer)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        return SettleResult(True, requirements.network.caip2, _TX, payload.payer)

    async def supported(self) -> dict[str, Any]:
        return _SUPPORTED


_SUPPORTED: dict[str, Any] = {
    "kinds": [{"x402Version": 2, "scheme": "exact", "network": NETWORK}],
    "extensions": [],
    "signers": {},
}


def facilitator_double() -> Any:
    """A loopback HTTP facilitator answering ``/verify`` valid and ``/settle`` success immediately (no ECDSA, no chain).

    It reads the body only to echo the payer, as a real facilitator does; both SDKs' clients accept its replies.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def payer_of(request: Request) -> tuple[str, str]:
        body = json.loads(await request.body())
        auth = body.get("paymentPayload", {}).get("payload", {}).get("authorization", {})
        network = body.get("paymentRequirements", {}).get("network", NETWORK)
        return str(auth.get("from", "")), str(network)

    async def verify(request: Request) -> Response:
        payer, _ = await payer_of(request)
        return JSONResponse({"isValid": True, "payer": payer})

    async def settle(request: Request) -> Response:
        payer, network = await payer_of(request)
        return JSONResponse({"success": True, "transaction": _TX, "network": network, "payer": payer})

    async def supported(request: Request) -> Response:
        return JSONResponse(_SUPPORTED)

    return Starlette(
        routes=[
            Route("/verify", verify, methods=["POST"]),
            Route("/settle", settle, methods=["POST"]),
            Route("/supported", supported),
        ]
    )


# -- payments ---------------------------------------------------------------------------------------------------
class Payer:
    """Answers a 402 the way a real client does (our :class:`~x402_middleware.X402Auth` auth flow), before timing.

    >>> header_name, values = Payer().sign_many(challenge_response, 1000)  # doctest: +SKIP
    """

    def __init__(self, key: str = PAYER_KEY) -> None:
        self.auth = X402Auth(key, max_amount_per_payment=None, max_total_spend=None)

    def sign(self, challenge: httpx.Response) -> tuple[str, str]:
        """One fresh payment (a new random nonce) for the 402 ``challenge``: ``(header name, value)``."""
        request = httpx.Request(challenge.request.method, challenge.request.url)
        flow = self.auth.sync_auth_flow(request)
        next(flow)
        paid = flow.send(challenge)
        for name in ("payment-signature", "x-payment"):
            if name in paid.headers:
                return name, paid.headers[name]
        raise RuntimeError(f"the client did not pay the challenge: {challenge.status_code} {challenge.headers}")

    def sign_many(self, challenge: httpx.Response, count: int) -> tuple[str, list[str]]:
        """``count`` distinct payments for one challenge (a payment is served at most once)."""
        name, first = self.sign(challenge)
        return name, [first, *(self.sign(challenge)[1] for _ in range(count - 1))]


def challenge_response(url: str, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> httpx.Response:
    """Wrap a 402 seen in-process (ASGI messages) as the ``httpx.Response`` the payer reads."""
    return httpx.Response(status, headers=list(headers), content=body, request=httpx.Request("GET", url))
