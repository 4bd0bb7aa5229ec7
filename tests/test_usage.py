"""Pay for what you use: the ``upto`` flow of every shell, with a toy ``upto`` scheme and facilitator doubles.

The same rules hold on ASGI (Starlette), WSGI (Flask) and Django: the facilitator verifies before the app runs;
the app's ``charge()`` is settled (no report: the maximum; above it: clamped, logged at ERROR; 0: no
transaction); a whole response settles before it is sent, a stream after its last byte, where a refused
settlement is a ``lost`` event and a ``lost`` journal row. Django: tests/django/test_usage_django.py. The real
chain and the real Permit2 scheme: tests/test_upto_chain.py.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests._payments import decode, encode
from x402_middleware import (
    ConfigurationError,
    MalformedPaymentError,
    PaymentMiddleware,
    PaymentWSGIMiddleware,
    RouteConfig,
    Served,
    charge,
)
from x402_middleware.events import PaymentEvent
from x402_middleware.journal import LOST, SQLiteJournal
from x402_middleware.models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult, parse_requirements
from x402_middleware.networks import Asset, Network, register_network
from x402_middleware.schemes import PaymentId, register_scheme

pytestmark = pytest.mark.anyio
NET = "uptotoy:1"
MAX = 500  # "$5.00" in a 2-decimal token


@dataclass(frozen=True)
class ToyPayload:
    payer: str
    amount: int
    nonce: str


class ToyUpto:
    """``upto`` on a toy chain family: the payer signs the maximum (amount == requirement.amount)."""

    scheme = "upto"
    namespace = "uptotoy"
    address_format = "letters"
    replay_reason = "toy_replay"

    def valid_address(self, value: str) -> bool:
        return value.isalpha()

    def requirement_extra(self, requirement: PaymentRequirements) -> dict[str, Any]:
        return {"facilitatorAddress": "fac"}

    def parse_requirement(
        self, network: Network, asset: str, pay_to: str, extra: Mapping[str, Any]
    ) -> tuple[Asset, str, dict[str, Any]]:
        return Asset(asset, "Toy", "1", 2), pay_to, {k: v for k, v in extra.items() if k != "facilitatorAddress"}

    def parse_payload(self, payload: Mapping[str, Any]) -> ToyPayload:
        if not all(isinstance(payload.get(k), str) for k in ("payer", "amount", "nonce")):
            raise MalformedPaymentError("a toy payload has payer, amount and nonce")
        return ToyPayload(payload["payer"], int(payload["amount"]), payload["nonce"])

    def verify(self, payment: PaymentPayload, requirement: PaymentRequirements, now: int) -> VerifyResult | None:
        ok = payment.data.amount == requirement.amount
        return VerifyResult(ok, None if ok else "toy_amount", None, payment.data.payer)

    def payment_id(self, payment: PaymentPayload, requirement: PaymentRequirements) -> PaymentId:
        return PaymentId(f"uptotoy:{payment.data.nonce}", 4_000_000_000.0)

    def sign(self, requirement: PaymentRequirements, key: bytes, now: int) -> dict[str, Any]:
        return {"payer": key.decode(), "amount": str(requirement.amount), "nonce": secrets.token_hex(8)}


register_network(Network(NET, asset=Asset("TOY", "Toy", "1", 2, "TOY")))
register_scheme(ToyUpto())


class Facilitator:
    """Verifies (as told) and settles what it is asked for, sync or async."""

    def __init__(self, *, verify_ok: bool = True, refuse: bool = False) -> None:
        self.verify_ok, self.refuse = verify_ok, refuse
        self.verified: list[int] = []
        self.settled: list[int] = []

    def _verify(self, payload: PaymentPayload, req: PaymentRequirements) -> VerifyResult:
        self.verified.append(req.amount)
        if self.verify_ok:
            return VerifyResult(True, payer=payload.payer)
        return VerifyResult(False, "permit2_allowance_required", "approve Permit2 first", payload.payer)

    def _settle(self, payload: PaymentPayload, req: PaymentRequirements) -> SettleResult:
        if self.refuse:
            return SettleResult(False, NET, "", payload.payer, error_reason="transaction_failed")
        self.settled.append(req.amount)
        return SettleResult(True, NET, f"tx-{payload.data.nonce}", payload.payer, amount=req.amount)


class AsyncFacilitator(Facilitator):
    async def supported(self) -> dict[str, Any]:
        return {"kinds": [{"x402Version": 2, "scheme": "upto", "network": NET}]}

    async def verify(self, payload: PaymentPayload, req: PaymentRequirements) -> VerifyResult:
        return self._verify(payload, req)

    async def settle(self, payload: PaymentPayload, req: PaymentRequirements) -> SettleResult:
        return self._settle(payload, req)


class SyncFacilitator(Facilitator):
    def supported(self) -> dict[str, Any]:
        return {"kinds": [{"x402Version": 2, "scheme": "upto", "network": NET}]}

    def verify(self, payload: PaymentPayload, req: PaymentRequirements) -> VerifyResult:
        return self._verify(payload, req)

    def settle(self, payload: PaymentPayload, req: PaymentRequirements) -> SettleResult:
        return self._settle(payload, req)


def pay(challenge_header: str, index: int = 0) -> str:
    challenge = decode(challenge_header)
    offer = challenge["accepts"][index]
    inner = ToyUpto().sign(parse_requirements(offer, 2), b"bob", 0)
    return encode({"x402Version": 2, "resource": challenge["resource"], "accepted": offer, "payload": inner})


# -- ASGI (Starlette) --------------------------------------------------------------------------------------------
async def whole(request: Request) -> Response:
    amount = request.query_params.get("charge")
    if amount is not None:
        charge(request, int(amount) if amount.isdigit() else amount)
    return JSONResponse({"ok": True}, status_code=int(request.query_params.get("status", "200")))


async def stream(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"data: {i}\n\n".encode()
        charge(request.scope, 42)  # the raw scope works too; known only at the end, like an LLM's usage
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


async def by_header(request: Request) -> Response:
    return JSONResponse({"ok": True}, headers={"x-units": "7"})


def _units(served: Served) -> int:
    assert served.status == 200 and served.payment.amount == MAX
    return int(served.headers["x-units"]) * 10


def asgi_app(fac: AsyncFacilitator, events: list[PaymentEvent], journal: Any = None) -> PaymentMiddleware:
    app = Starlette(
        routes=[Route("/whole", whole), Route("/stream", stream), Route("/header", by_header), Route("/both", whole)]
    )
    upto = RouteConfig(price="$5", scheme="upto")
    routes = {
        "GET /whole": upto,
        "GET /stream": upto,
        "GET /header": RouteConfig(price="$5", scheme="upto", charge=_units),
        "GET /both": RouteConfig(price="$5", scheme=("upto", "upto2")),
    }
    return PaymentMiddleware(
        app, routes=routes, pay_to="alice", network=NET, facilitator=fac, listeners=events.append, journal=journal
    )


register_scheme(type("ToyUpto2", (ToyUpto,), {"scheme": "upto2"})())


async def _call(app: Any, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        challenge = await c.get(path)
        assert challenge.status_code == 402
        return await c.get(path, headers={"PAYMENT-SIGNATURE": pay(challenge.headers["payment-required"])})


async def test_a_whole_response_settles_the_reported_charge_before_it_is_sent() -> None:
    fac, events = AsyncFacilitator(), list[PaymentEvent]()
    r = await _call(asgi_app(fac, events), "/whole?charge=$0.42")
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert fac.verified == [MAX]  # the facilitator checked the maximum before the app ran
    assert fac.settled == [42]
    settlement = decode(r.headers["payment-response"])
    assert settlement["success"] is True and settlement["amount"] == "42"
    assert [e.kind for e in events] == ["verified", "settling", "settled", "served"]
    assert events[2].amount == 42


async def test_no_charge_settles_the_maximum_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    fac = AsyncFacilitator()
    with caplog.at_level(logging.WARNING, "x402_middleware"):
        r = await _call(asgi_app(fac, []), "/whole")
    assert r.status_code == 200 and fac.settled == [MAX]
    assert "no charge was reported" in caplog.text


async def test_a_charge_above_the_maximum_is_an_error_and_clamped(caplog: pytest.LogCaptureFixture) -> None:
    fac = AsyncFacilitator()
    with caplog.at_level(logging.ERROR, "x402_middleware"):
        r = await _call(asgi_app(fac, []), "/whole?charge=501")
    assert r.status_code == 200 and fac.settled == [MAX]
    assert any(rec.levelno == logging.ERROR and "above the signed maximum" in rec.message for rec in caplog.records)


async def test_a_charge_of_zero_settles_nothing() -> None:
    fac, events = AsyncFacilitator(), list[PaymentEvent]()
    r = await _call(asgi_app(fac, events), "/whole?charge=0")
    assert r.status_code == 200 and fac.settled == []
    assert decode(r.headers["payment-response"])["amount"] == "0"
    assert [(e.kind, e.amount, e.transaction) for e in events] == [
        ("verified", None, ""),
        ("settled", 0, ""),  # no settling step: nothing is sent to the facilitator
        ("served", None, ""),
    ]


async def test_a_failed_response_is_never_settled() -> None:
    fac, events = AsyncFacilitator(), list[PaymentEvent]()
    r = await _call(asgi_app(fac, events), "/whole?charge=10&status=500")
    assert r.status_code == 500 and fac.settled == [] and "payment-response" not in r.headers
    assert [e.kind for e in events] == ["verified", "not_settled"]


async def test_an_unfunded_payer_is_refused_before_the_app_runs() -> None:
    fac = AsyncFacilitator(verify_ok=False)
    r = await _call(asgi_app(fac, []), "/whole?charge=10")
    assert r.status_code == 402 and r.json()["error"] == "permit2_allowance_required"
    assert fac.settled == []


async def test_a_whole_response_whose_settlement_is_refused_is_never_sent() -> None:
    fac = AsyncFacilitator(refuse=True)
    r = await _call(asgi_app(fac, []), "/whole?charge=10")
    assert r.status_code == 402 and r.json()["error"] == "transaction_failed" and "ok" not in r.text


async def test_a_stream_settles_after_its_last_byte_with_the_charge_known_at_the_end() -> None:
    fac, events = AsyncFacilitator(), list[PaymentEvent]()
    r = await _call(asgi_app(fac, events), "/stream")
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert "payment-response" not in r.headers  # the charge is known after the headers went out
    assert "private" in r.headers["cache-control"]
    assert fac.settled == [42]
    assert [e.kind for e in events] == ["verified", "settling", "settled", "served"]


async def test_a_stream_whose_settlement_is_refused_is_a_recorded_loss(tmp_path: Path) -> None:
    fac, events = AsyncFacilitator(refuse=True), list[PaymentEvent]()
    journal = SQLiteJournal(str(tmp_path / "j.db"))
    try:
        app = asgi_app(fac, events, journal)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            header = pay((await c.get("/stream")).headers["payment-required"])
            r = await c.get("/stream", headers={"PAYMENT-SIGNATURE": header})
            again = await c.get("/stream", headers={"PAYMENT-SIGNATURE": header})
        assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")  # served: the operator's loss
        assert [e.kind for e in events] == ["verified", "settling", "lost"], [(e.kind, e.reason) for e in events]
        assert events[-1].amount == 42
        assert events[-1].reason == "transaction_failed"
        (row,) = journal.entries(LOST)
        assert row.amount == 42 and row.reason == "transaction_failed"
        assert again.status_code == 402  # the refused signature is never served again, nor retried
        assert fac.settled == []
    finally:
        journal.close()


async def test_a_charge_function_computes_the_charge_from_the_response() -> None:
    fac = AsyncFacilitator()
    r = await _call(asgi_app(fac, []), "/header")
    assert r.status_code == 200 and fac.settled == [70]


async def test_a_failing_charge_function_settles_the_maximum(caplog: pytest.LogCaptureFixture) -> None:
    def broken(served: Served) -> int:
        raise KeyError("x-units")

    fac = AsyncFacilitator()
    app = PaymentMiddleware(
        Starlette(routes=[Route("/header", by_header)]),
        routes={"GET /header": RouteConfig(price="$5", scheme="upto", charge=broken)},
        pay_to="alice",
        network=NET,
        facilitator=fac,
    )
    with caplog.at_level(logging.ERROR, "x402_middleware"):
        r = await _call(app, "/header")
    assert r.status_code == 200 and fac.settled == [MAX]
    assert "the charge function" in caplog.text


async def test_a_route_offers_several_schemes_in_one_402() -> None:
    fac = AsyncFacilitator()
    app = asgi_app(fac, [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        challenge = (await c.get("/both")).headers["payment-required"]
        assert [a["scheme"] for a in decode(challenge)["accepts"]] == ["upto", "upto2"]
        r = await c.get("/both?charge=5", headers={"PAYMENT-SIGNATURE": pay(challenge, 0)})
    assert r.status_code == 200 and fac.settled == [5]


def test_charge_refuses_floats_and_ignores_a_request_without_upto() -> None:
    with pytest.raises(ConfigurationError, match="never a float"):
        charge({}, 0.5)
    assert charge({}, Decimal("0.01")) is False
    with pytest.raises(ConfigurationError, match="charge= is a function of the response"):
        bad: Any = 42
        PaymentMiddleware(
            Starlette(), routes={"/x": RouteConfig(price="$1", scheme="upto", charge=bad)}, pay_to="alice", network=NET,
            facilitator=AsyncFacilitator(),
        )  # fmt: skip


# -- WSGI (Flask) ------------------------------------------------------------------------------------------------
def flask_app(fac: SyncFacilitator, events: list[PaymentEvent]) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/whole")
    def whole_view() -> Any:
        charge(flask.request, 17)
        return {"ok": True}

    @app.get("/stream")
    def stream_view() -> Any:
        environ = flask.request.environ

        def body() -> Iterator[bytes]:
            yield b"data: 1\n\n"
            charge(environ, 23)
            yield b"data: [DONE]\n\n"

        return flask.Response(body(), mimetype="text/event-stream")

    upto = RouteConfig(price="$5", scheme="upto")
    app.wsgi_app = PaymentWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, routes={"/whole": upto, "/stream": upto}, pay_to="alice", network=NET, facilitator=fac,
        listeners=events.append,
    )  # fmt: skip
    return app


def test_flask_whole_and_streamed_responses_settle_the_charge() -> None:
    fac, events = SyncFacilitator(), list[PaymentEvent]()
    client = flask_app(fac, events).test_client()
    for path, amount in (("/whole", 17), ("/stream", 23)):
        challenge = client.get(path)
        assert challenge.status_code == 402
        r = client.get(path, headers={"PAYMENT-SIGNATURE": pay(challenge.headers["payment-required"])})
        assert r.status_code == 200 and r.get_data().endswith(b"}\n" if path == "/whole" else b"[DONE]\n\n")
        r.close()  # the WSGI server's close(): a stream is settled after its last byte
        assert fac.settled[-1] == amount
        assert ("payment-response" in r.headers) is (path == "/whole")  # a stream settles after its headers
    assert fac.verified == [MAX, MAX]
    assert [e.kind for e in events].count("settled") == 2
