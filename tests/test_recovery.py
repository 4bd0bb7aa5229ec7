"""Idempotent recovery (issue 15): a settled payment whose response never reached the client is served again for
the same request, without a second settlement; the same payment with another request is refused with a reason.

In-process, with the facilitator test double and a real SQLite journal; the crash tests on the dev chain with
real processes killed by SIGKILL are in ``tests/test_crash_recovery.py``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, decode, encode, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import PaymentMiddleware, PaymentWSGIMiddleware, SettleResult
from x402_middleware.journal import SETTLED, Journal, SQLiteJournal
from x402_middleware.schemes.evm.exact import NONCE_ALREADY_USED

NETWORK = "eip155:84532"
ROUTES = {"POST /paid": "$0.001"}
pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    """The same rules on both backends: a SQLite file, and a fresh table on a real PostgreSQL."""
    if request.param == "sqlite":
        journal: Journal = SQLiteJournal(tmp_path / "journal.db")
    else:
        from x402_middleware.journal.postgres import PostgresJournal

        journal = PostgresJournal(request.getfixturevalue("postgres_url"), table=f"t_{uuid.uuid4().hex}")
    try:
        yield journal
    finally:
        journal.close()


def _app(cut: list[bool]) -> Any:
    """Echoes the body in two chunks; while ``cut[0]`` is true it raises after the first (the response is lost)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"CONTENT:", "more_body": True})
        if cut[0]:
            raise ConnectionResetError("the connection dropped mid-body")
        await send({"type": "http.response.body", "body": body})

    return app


def _mw(app: Any, fac: Any, journal: Journal | None) -> PaymentMiddleware:
    return PaymentMiddleware(app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac, journal=journal)


def _client(mw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw, raise_app_exceptions=False), base_url="http://t")


async def _signature(mw: Any, **extensions: Any) -> str:
    async with _client(mw) as c:
        challenge = decode((await c.post("/paid", content=b"q")).headers["payment-required"])
    signature = pay_v2(challenge)
    if extensions:
        payload = decode(signature)
        payload["extensions"] = extensions
        signature = encode(payload)
    return signature


def _tx(response: httpx.Response) -> str:
    return str(json.loads(base64.b64decode(response.headers["payment-response"]))["transaction"])


async def test_a_settled_payment_whose_response_was_cut_off_is_served_again_once_without_a_second_charge(
    journal: Journal,
) -> None:
    cut, fac = [True], FakeFacilitator()
    mw = _mw(_app(cut), fac, journal)
    sig = await _signature(mw)
    async with _client(mw) as c:
        lost = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert lost.status_code == 200 and lost.content == b"CONTENT:"  # settled, then the body was cut
        (row,) = journal.entries()
        assert row.state == SETTLED and row.unserved and row.fingerprint.startswith("req:")

        cut[0] = False
        again = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert again.status_code == 200 and again.content == b"CONTENT:question"
        assert _tx(again) == _tx(lost) == row.transaction
        assert len(fac.settled) == 1  # no second settlement
        assert journal.entries()[0].served_at is not None

        third = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert third.status_code == 402 and third.json()["error"] == NONCE_ALREADY_USED  # served once is enough
    assert len(fac.settled) == 1


async def test_the_same_payment_with_another_request_is_refused_and_the_right_request_still_recovers(
    journal: Journal,
) -> None:
    cut, fac = [True], FakeFacilitator()
    mw = _mw(_app(cut), fac, journal)
    sig = await _signature(mw)
    async with _client(mw) as c:
        await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        cut[0] = False
        other = await c.post("/paid", content=b"another question", headers={"PAYMENT-SIGNATURE": sig})
        assert other.status_code == 402 and other.json()["error"] == "payment_request_mismatch"
        assert b"CONTENT" not in other.content and "different request" in other.json()["message"]
        same = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert same.status_code == 200 and same.content == b"CONTENT:question"
    assert len(fac.settled) == 1


async def test_after_a_restart_the_journal_recovers_a_payment_the_facilitator_calls_used(
    journal: Journal,
) -> None:
    cut = [True]
    first = _mw(_app(cut), FakeFacilitator(), journal)
    sig = await _signature(first)
    async with _client(first) as c:
        lost = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
    # A new process: an empty store, a facilitator that finds the authorization used (it is, by our settlement).
    used = FakeFacilitator(settle_result=SettleResult(False, NETWORK, "", None, NONCE_ALREADY_USED))
    cut[0] = False
    restarted = _mw(_app(cut), used, journal)
    async with _client(restarted) as c:
        other = await c.post("/paid", content=b"not the same", headers={"PAYMENT-SIGNATURE": sig})
        assert other.status_code == 402 and other.json()["error"] == "payment_request_mismatch"
        again = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert again.status_code == 200 and again.content == b"CONTENT:question" and _tx(again) == _tx(lost)
        # A payment the journal never saw settle is what it says: used elsewhere, refused.
        stranger = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": await _signature(first)})
        assert stranger.status_code == 402 and stranger.json()["error"] == NONCE_ALREADY_USED


async def test_a_journal_row_left_settling_answers_retry_later_until_reconciled(journal: Journal) -> None:
    # The first process died between the transfer and the journal's settled row: the row says settling.
    first = _mw(_app([False]), FakeFacilitator(raise_on_settle=True), journal)
    sig = await _signature(first)
    async with _client(first) as c:
        unknown = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert unknown.status_code == 503
    (row,) = journal.entries()
    used = FakeFacilitator(settle_result=SettleResult(False, NETWORK, "", None, NONCE_ALREADY_USED))
    restarted = _mw(_app([False]), used, journal)
    async with _client(restarted) as c:
        wait = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert wait.status_code == 503 and wait.json()["error"] == "settlement_pending"
        assert wait.headers["retry-after"] == "5" and b"CONTENT" not in wait.content
        journal.mark_reconciled(row.key, SETTLED, transaction="0x" + "ab" * 32)  # what reconcile() finds on chain
        served = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert served.status_code == 200 and _tx(served) == "0x" + "ab" * 32


async def test_a_payment_identifier_names_the_request_instead_of_its_body(journal: Journal) -> None:
    cut, fac = [True], FakeFacilitator()
    mw = _mw(_app(cut), fac, journal)
    async with _client(mw) as c:
        challenge = decode((await c.post("/paid")).headers["payment-required"])
        assert challenge["extensions"]["payment-identifier"]["info"] == {"required": False}
    ident = {"payment-identifier": {"info": {"required": False, "id": "order_0123456789abcdef"}}}
    sig = await _signature(mw, **ident)
    async with _client(mw) as c:
        await c.post("/paid", content=b"a body with a timestamp 1", headers={"PAYMENT-SIGNATURE": sig})
        assert journal.entries()[0].fingerprint == "id:order_0123456789abcdef"
        cut[0] = False
        again = await c.post("/paid", content=b"a body with a timestamp 2", headers={"PAYMENT-SIGNATURE": sig})
        assert again.status_code == 200 and again.content == b"CONTENT:a body with a timestamp 2"
    assert len(fac.settled) == 1


async def test_without_a_journal_nothing_is_recovered_and_the_402_declares_no_extension() -> None:
    cut, fac = [True], FakeFacilitator()
    mw = _mw(_app(cut), fac, None)
    async with _client(mw) as c:
        assert "extensions" not in decode((await c.post("/paid")).headers["payment-required"])
    sig = await _signature(mw)
    async with _client(mw) as c:
        await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        cut[0] = False
        again = await c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert again.status_code == 402 and again.json()["error"] == NONCE_ALREADY_USED


def test_wsgi_recovers_a_response_cut_off_mid_body(journal: Journal) -> None:
    cut = [True]

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"CONTENT:"
        if cut[0]:
            raise ConnectionResetError("the connection dropped mid-body")
        yield body

    fac = SyncFakeFacilitator()
    mw = PaymentWSGIMiddleware(app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac, journal=journal)
    with httpx.Client(transport=httpx.WSGITransport(app=mw, raise_app_exceptions=False), base_url="http://t") as c:
        sig = pay_v2(decode(c.post("/paid").headers["payment-required"]))
        with pytest.raises(ConnectionResetError):
            c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert journal.entries()[0].unserved
        cut[0] = False
        again = c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert again.status_code == 200 and again.content == b"CONTENT:question"
        assert journal.entries()[0].served_at is not None
        other = c.post("/paid", content=b"question", headers={"PAYMENT-SIGNATURE": sig})
        assert other.status_code == 402
    assert len(fac.settled) == 1


async def test_our_client_names_its_payment_when_the_server_declares_payment_identifier(journal: Journal) -> None:
    from tests._payments import PAYER_KEY
    from x402_middleware import X402Auth

    mw = _mw(_app([False]), FakeFacilitator(), journal)
    auth = X402Auth(PAYER_KEY, max_amount_per_payment="$0.01")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t", auth=auth) as c:
        paid = await c.post("/paid", content=b"question")
    assert paid.status_code == 200
    sent = decode(paid.request.headers["payment-signature"])["extensions"]["payment-identifier"]["info"]
    assert sent["required"] is False and len(sent["id"]) >= 16
    assert journal.entries()[0].fingerprint == "id:" + sent["id"]
