"""Pay for what you use on a real anvil dev chain: the ``upto`` scheme (Permit2) through our middleware.

The app reports the actual charge with ``charge()`` on Starlette (ASGI, in-process ``OnChainFacilitator``), Flask
(WSGI, ``SyncHTTPFacilitator`` to our facilitator server process) and Django (async, ``OnChainFacilitator``); every
test reads the payer's and the recipient's token balances on chain: the payer loses exactly what was settled.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests._chain import facilitator_process
from tests._django import setup_django
from tests._payments import decode, encode
from x402_middleware import PaymentMiddleware, PaymentWSGIMiddleware, RouteConfig, SyncHTTPFacilitator, charge
from x402_middleware.devchain import DevChain
from x402_middleware.events import PaymentEvent
from x402_middleware.facilitator import OnChainFacilitator
from x402_middleware.journal import LOST, SQLiteJournal
from x402_middleware.models import parse_requirements
from x402_middleware.schemes import find_scheme

setup_django()
pytestmark = pytest.mark.anyio
MAX = 50_000  # "$0.05": the maximum the payer signs


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    with DevChain("base-sepolia", payers=3, facilitators=2) as dev:
        yield dev


@pytest.fixture(scope="module")
def facilitator_url(chain: DevChain) -> Iterator[str]:
    """Our facilitator server (key 1) for the blocking shells."""
    with facilitator_process(chain, chain.facilitator_keys[1]) as url:
        yield url


def pay(challenge_header: str, key: str, scheme: str = "upto") -> str:
    """Sign the challenge's ``scheme`` offer with the library's scheme (the official clients: tests/test_interop_*)."""
    challenge = decode(challenge_header)
    offer = next(a for a in challenge["accepts"] if a["scheme"] == scheme)
    requirement = parse_requirements(offer, 2)
    handler = find_scheme(scheme, "eip155")
    assert handler is not None
    inner = handler.sign(requirement, bytes.fromhex(key[2:]), int(time.time()))
    return encode({"x402Version": 2, "resource": challenge["resource"], "accepted": offer, "payload": inner})


class Balances:
    def __init__(self, chain: DevChain, payer: str) -> None:
        self.chain, self.payer = chain, payer
        self.before = chain.balance_of(payer), chain.balance_of(chain.pay_to)

    def moved(self) -> int:
        """What left the payer, checked to have reached the recipient."""
        lost = self.before[0] - self.chain.balance_of(self.payer)
        assert self.chain.balance_of(self.chain.pay_to) - self.before[1] == lost
        return lost


# -- ASGI (Starlette) --------------------------------------------------------------------------------------------
async def work(request: Request) -> Response:
    amount = request.query_params.get("charge")
    if amount is not None:
        charge(request, int(amount))
    return JSONResponse({"done": True}, status_code=int(request.query_params.get("status", "200")))


def asgi_app(chain: DevChain, events: list[PaymentEvent], journal: Any = None) -> PaymentMiddleware:
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network)

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
            if request.query_params.get("revoke"):  # the payer revokes its allowance while being served
                chain.approve_permit2(request.scope["x402.payment"].payer, 0)
            yield b"data: 2\n\n"
            charge(request, 777)  # known only at the end, like an LLM's usage
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    upto = RouteConfig(price="$0.05", scheme="upto", extra={"facilitatorAddress": facilitator.address})
    both = RouteConfig(price="$0.05", scheme=("exact", "upto"), extra={"facilitatorAddress": facilitator.address})
    app = Starlette(routes=[Route("/work", work), Route("/stream", stream), Route("/both", work)])
    return PaymentMiddleware(
        app,
        routes={"GET /work": upto, "GET /stream": upto, "GET /both": both},
        pay_to=chain.pay_to,
        network=chain.network,
        facilitator=facilitator,
        listeners=events.append,
        journal=journal,
    )


async def _paid(app: Any, path: str, key: str, scheme: str = "upto") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        challenge = await c.get(path)
        assert challenge.status_code == 402
        return await c.get(path, headers={"PAYMENT-SIGNATURE": pay(challenge.headers["payment-required"], key, scheme)})


@pytest.mark.parametrize(("query", "settled"), [("charge=1234", 1234), ("charge=50001", MAX), ("", MAX)])
async def test_starlette_settles_the_charge_at_most_the_maximum(chain: DevChain, query: str, settled: int) -> None:
    events: list[PaymentEvent] = []
    balances = Balances(chain, chain.payer_addresses[0])
    r = await _paid(asgi_app(chain, events), f"/work?{query}", chain.payer_keys[0])
    assert r.status_code == 200 and r.json() == {"done": True}
    assert balances.moved() == settled  # a charge above the maximum is clamped; none reported: the maximum
    settlement = decode(r.headers["payment-response"])
    assert settlement["success"] is True and settlement["amount"] == str(settled)
    receipt = chain.rpc("eth_getTransactionReceipt", settlement["transaction"])
    assert int(receipt["status"], 16) == 1
    assert [e.kind for e in events] == ["verified", "settling", "settled", "served"] and events[2].amount == settled


async def test_a_zero_charge_moves_nothing_and_a_failed_response_is_not_settled(chain: DevChain) -> None:
    events: list[PaymentEvent] = []
    balances = Balances(chain, chain.payer_addresses[0])
    app = asgi_app(chain, events)
    zero = await _paid(app, "/work?charge=0", chain.payer_keys[0])
    failed = await _paid(app, "/work?charge=999&status=500", chain.payer_keys[0])
    assert zero.status_code == 200 and decode(zero.headers["payment-response"])["transaction"] == ""
    assert failed.status_code == 500 and "payment-response" not in failed.headers
    assert balances.moved() == 0
    assert [e.kind for e in events] == ["verified", "settled", "served", "verified", "not_settled"]


async def test_a_stream_settles_its_end_of_stream_charge(chain: DevChain) -> None:
    events: list[PaymentEvent] = []
    balances = Balances(chain, chain.payer_addresses[1])
    r = await _paid(asgi_app(chain, events), "/stream", chain.payer_keys[1])
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert balances.moved() == 777
    assert [e.kind for e in events] == ["verified", "settling", "settled", "served"]


async def test_exact_and_upto_in_one_402_the_client_chooses(chain: DevChain) -> None:
    balances = Balances(chain, chain.payer_addresses[0])
    app = asgi_app(chain, [])
    by_exact = await _paid(app, "/both?charge=10", chain.payer_keys[0], "exact")
    assert balances.moved() == MAX  # exact pays the price it signed; the charge is for upto payments
    by_upto = await _paid(app, "/both?charge=10", chain.payer_keys[0], "upto")
    assert by_exact.status_code == by_upto.status_code == 200
    assert balances.moved() == MAX + 10


async def test_an_allowance_revoked_while_serving_is_a_recorded_loss_never_retried(
    chain: DevChain, tmp_path: Path
) -> None:
    payer, key = chain.payer_addresses[2], chain.payer_keys[2]
    events: list[PaymentEvent] = []
    journal = SQLiteJournal(str(tmp_path / "journal.db"))
    try:
        balances = Balances(chain, payer)
        app = asgi_app(chain, events, journal)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            header = pay((await c.get("/stream?revoke=1")).headers["payment-required"], key)
            served = await c.get("/stream?revoke=1", headers={"PAYMENT-SIGNATURE": header})
            assert chain.allowance(payer) == 0
            again = await c.get("/stream", headers={"PAYMENT-SIGNATURE": header})
        assert served.status_code == 200 and served.text.endswith("data: [DONE]\n\n")  # the content went out
        assert balances.moved() == 0  # ... and was never paid for
        assert [e.kind for e in events] == ["verified", "settling", "lost"]
        assert events[-1].amount == 777 and events[-1].reason
        (row,) = journal.entries(LOST)
        assert row.payer == payer and row.amount == 777
        assert again.status_code == 402  # the same payment is refused, not settled again
    finally:
        journal.close()
        chain.approve_permit2(payer)


async def test_a_revoked_allowance_is_refused_before_the_app_runs(chain: DevChain) -> None:
    payer, key = chain.payer_addresses[2], chain.payer_keys[2]
    chain.approve_permit2(payer, 0)
    try:
        r = await _paid(asgi_app(chain, []), "/work?charge=5", key)
        assert r.status_code == 402 and r.json()["error"] == "permit2_allowance_required"
    finally:
        chain.approve_permit2(payer)


# -- WSGI (Flask) ------------------------------------------------------------------------------------------------
def test_flask_reports_the_charge_on_chain(chain: DevChain, facilitator_url: str) -> None:
    app = flask.Flask(__name__)

    @app.get("/work")
    def work_view() -> Any:
        charge(flask.request, 4321)
        return {"done": True}

    address = Account.from_key(chain.facilitator_keys[1]).address
    app.wsgi_app = PaymentWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        routes={"GET /work": RouteConfig(price="$0.05", scheme="upto", extra={"facilitatorAddress": address})},
        pay_to=chain.pay_to,
        network=chain.network,
        facilitator=SyncHTTPFacilitator(facilitator_url),
    )
    client = app.test_client()
    balances = Balances(chain, chain.payer_addresses[1])
    challenge = client.get("/work")
    r = client.get(
        "/work", headers={"PAYMENT-SIGNATURE": pay(challenge.headers["payment-required"], chain.payer_keys[1])}
    )
    assert r.status_code == 200 and r.get_json() == {"done": True}
    assert decode(r.headers["payment-response"])["amount"] == "4321"
    assert balances.moved() == 4321


# -- Django (async, the view calls charge(request, ...)) ---------------------------------------------------------
def test_django_reports_the_charge_on_chain(chain: DevChain) -> None:
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient, override_settings

    from tests.django import settings as test_settings

    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network)
    upto = RouteConfig(price="$0.05", scheme="upto", extra={"facilitatorAddress": facilitator.address})
    conf = {
        **test_settings.X402,
        "ROUTES": {"GET /upto": upto},
        "PAY_TO": chain.pay_to,
        "NETWORK": chain.network,
        "FACILITATOR": facilitator,
    }
    client = AsyncClient()
    balances = Balances(chain, chain.payer_addresses[0])
    with override_settings(X402=conf):
        challenge = async_to_sync(client.get)("/upto")
        header = pay(challenge["PAYMENT-REQUIRED"], chain.payer_keys[0])
        r = async_to_sync(client.get)("/upto", headers={"PAYMENT-SIGNATURE": header})
    assert r.status_code == 200
    assert balances.moved() == 11  # tests/django/urls.py: charge(request, 11)
