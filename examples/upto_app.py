"""Pay for what you use: a Starlette route that costs $0.0001 a word, at most $0.01 a call (x402 ``upto``).

The client signs the maximum; the handler counts the words it returns and reports that charge with
``charge(request, amount)``; the middleware settles it (never more than the maximum) once the response is complete.
Run it against the offline sandbox (README "Offline: pay the Starlette example in a minute": paste its ``export``
line first)::

    uvicorn examples.upto_app:app --port 8000
    python -c 'import os, httpx; from x402_middleware import X402Auth, settlement_of
    r = httpx.get("http://127.0.0.1:8000/words?n=25", auth=X402Auth(os.environ["X402_PAYER_KEY"]))
    print(r.status_code, r.json(), settlement_of(r))'      # settled: 2500 atomic units ($0.0025) of $0.01

Environment: ``X402_FACILITATOR_URL``, ``X402_PAY_TO``, ``X402_NETWORK`` (default ``eip155:84532``) and
``X402_FACILITATOR_ADDRESS`` (the facilitator that settles ``upto``; default: read from its ``/supported``).
"""

from __future__ import annotations

import os
from decimal import Decimal

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from x402_middleware import Facilitator, HTTPFacilitator, PaymentMiddleware, RouteConfig, charge

DEV_PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's public dev account #1: set X402_PAY_TO
PER_WORD = Decimal("0.0001")  # USD
MAXIMUM = "$0.01"  # what the client signs: 100 words
WORDS = ["pay", "for", "what", "you", "use", "with", "x402", "upto"]


async def words(request: Request) -> JSONResponse:
    n = max(0, min(int(request.query_params.get("n", "10")), 100))
    text = " ".join(WORDS[i % len(WORDS)] for i in range(n))
    charge(request, PER_WORD * n)  # the actual cost; settled when the response is complete
    return JSONResponse({"words": text, "charged_usd": str(PER_WORD * n)})


def upto_facilitator_address(url: str, network: str) -> str:
    """The address a facilitator settles ``upto`` payments with, as its ``/supported`` lists it."""
    kinds = httpx.get(url.rstrip("/") + "/supported", timeout=10).json()["kinds"]
    for kind in kinds:
        if kind.get("scheme") == "upto" and kind.get("network") == network:
            return str(kind["extra"]["facilitatorAddress"])
    raise RuntimeError(f"the facilitator at {url} does not settle upto payments on {network}")


def create_app(
    *, facilitator: Facilitator | None = None, pay_to: str | None = None, facilitator_address: str | None = None
) -> Starlette:
    env = os.environ
    network = env.get("X402_NETWORK", "eip155:84532")
    url = env.get("X402_FACILITATOR_URL", "https://x402.org/facilitator")
    address = facilitator_address or env.get("X402_FACILITATOR_ADDRESS") or upto_facilitator_address(url, network)
    route = RouteConfig(price=MAXIMUM, scheme="upto", extra={"facilitatorAddress": address})
    return Starlette(
        routes=[Route("/words", words)],
        middleware=[
            Middleware(
                PaymentMiddleware,
                routes={"GET /words": route},
                pay_to=pay_to or env.get("X402_PAY_TO", DEV_PAY_TO),
                network=network,
                facilitator=facilitator or HTTPFacilitator(url),
            )
        ],
    )


def __getattr__(name: str) -> Starlette:  # ``uvicorn examples.upto_app:app`` builds it then, not at import
    if name == "app":
        return create_app()
    raise AttributeError(name)
