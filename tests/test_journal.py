"""The settlement journal on real parts: a paid app with the real OnChainFacilitator on the dev chain (anvil),
its SQLite file read back in a new process and through the operator CLI, and reconciliation against the chain."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from eth_account import Account

from tests._chain import TWA_VRS, latest_timestamp, sign_authorization, start_dev_chain
from tests._payments import decode, pay_v2
from x402_middleware import PaymentMiddleware
from x402_middleware.devchain import DevChain
from x402_middleware.events import NOT_SETTLED, SETTLED, VERIFIED, PaymentEvent
from x402_middleware.facilitator import OnChainFacilitator
from x402_middleware.journal import (
    CLAIMED,
    EXPIRED_UNSETTLED,
    FAILED,
    UNKNOWN,
    USED_ELSEWHERE,
    Reconciler,
    SQLiteJournal,
    async_journal_listener,
    reconcile,
)
from x402_middleware.models import Payment, PaymentRequirements, parse_payment_payload, parse_requirements

PRICE = 10_000  # $0.01 in USDC atomic units


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    chain = start_dev_chain("base-sepolia", payers=2, facilitators=1)
    try:
        yield chain
    finally:
        chain.stop()


async def _content(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"CONTENT"})


class _Paid:
    def __init__(self, chain: DevChain, journal: SQLiteJournal, **facilitator: Any) -> None:
        self.facilitator = OnChainFacilitator(
            chain.rpc_url, chain.facilitator_keys, network=chain.network, **facilitator
        )
        self.app = PaymentMiddleware(
            _content,
            routes={"GET /paid": "$0.01"},
            pay_to=chain.pay_to,
            network=chain.network,
            facilitator=self.facilitator,
            listeners=[async_journal_listener(journal)],
        )


@pytest.fixture
async def client(chain: DevChain, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SQLiteJournal, _Paid]]:
    journal = SQLiteJournal(tmp_path / "j.db")
    paid = _Paid(chain, journal, receipt_timeout=0.3)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=paid.app), base_url="http://t") as c:
            yield c, journal, paid
    finally:
        await paid.facilitator.aclose()
        journal.close()


async def _challenge(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/paid")
    assert r.status_code == 402
    return decode(r.headers["payment-required"])  # type: ignore[no-any-return]


def _key_of(sig: str) -> str:
    auth = decode(sig)["payload"]["authorization"]
    return f"x402:84532:{decode(sig)['accepted']['asset'].lower()}:{auth['from'].lower()}:{auth['nonce'][2:]}"


def _requirements(sig: str) -> PaymentRequirements:
    return parse_requirements(decode(sig)["accepted"], 2)


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.mark.anyio
async def test_settled_and_refused_payments_are_journaled_durably(
    chain: DevChain, client: tuple[httpx.AsyncClient, SQLiteJournal, _Paid]
) -> None:
    c, journal, _ = client
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    before = chain.balance_of(payer)
    sig = pay_v2(await _challenge(c), key=key)
    served = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert served.status_code == 200 and served.content == b"CONTENT"
    tx = decode(served.headers["payment-response"])["transaction"]
    assert chain.rpc("eth_getTransactionReceipt", tx)["status"] == "0x1"
    assert chain.balance_of(payer) == before - PRICE

    empty = Account.create()
    refused_sig = pay_v2(await _challenge(c), key=empty.key.hex())
    refused = await c.get("/paid", headers={"PAYMENT-SIGNATURE": refused_sig})
    assert refused.status_code == 402 and refused.json()["error"] == "invalid_exact_evm_insufficient_balance"

    settled, failed = journal.get(_key_of(sig)), journal.get(_key_of(refused_sig))
    assert settled is not None and failed is not None
    assert (settled.state, settled.transaction, settled.amount, settled.payer) == ("settled", tx, PRICE, payer)
    assert settled.settled_at is not None and settled.network == chain.network and settled.pay_to == chain.pay_to
    assert (failed.state, failed.reason, failed.transaction) == (FAILED, "invalid_exact_evm_insufficient_balance", "")
    assert failed.payer == empty.address and failed.settled_at is None

    # A later event for the settled payment never downgrades it.
    payment = Payment(payer, PRICE, _requirements(sig), parse_payment_payload(decode(sig)))
    journal.record(PaymentEvent(NOT_SETTLED, payment, status=500))
    journal.record(PaymentEvent(VERIFIED, payment))
    assert journal.get(_key_of(sig)) == settled

    # Durable: a new process opening the file sees the same rows.
    code = (
        "import json, sys; from dataclasses import asdict; from x402_middleware.journal import SQLiteJournal;"
        "print(json.dumps([asdict(e) for e in SQLiteJournal(sys.argv[1]).entries()]))"
    )
    rows = json.loads(_run("-c", code, journal.path))
    assert [(r["key"], r["state"], r["transaction"]) for r in rows] == [
        (settled.key, "settled", tx),
        (failed.key, FAILED, ""),
    ]

    view = json.loads(_run("-m", "x402_middleware.journal", "--db", journal.path, "--json"))
    assert view["pending"] == []
    assert [(t["network"], t["asset"].lower(), t["count"], t["amount"]) for t in view["settled_totals"]] == [
        (chain.network, settled.asset.lower(), 1, str(PRICE))
    ]
    assert len(view["settled_by_day"]) == 1 and view["settled_by_day"][0]["amount"] == str(PRICE)
    table = _run("-m", "x402_middleware.journal", "--db", journal.path)
    assert "pending (0)" in table and "settled totals (1)" in table and chain.network in table


@pytest.mark.anyio
async def test_a_slow_receipt_is_unknown_with_its_tx_and_reconciles_to_settled(
    chain: DevChain, client: tuple[httpx.AsyncClient, SQLiteJournal, _Paid]
) -> None:
    c, journal, _ = client
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    sig = pay_v2(await _challenge(c), key=key)
    chain.rpc("evm_setAutomine", False)
    try:
        pending = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        assert pending.status_code == 503 and pending.json()["error"] == "settlement_pending"
        tx = pending.json()["transaction"]
        entry = journal.get(_key_of(sig))
        assert entry is not None and (entry.state, entry.transaction) == (UNKNOWN, tx)
        still = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})  # the retry follows the same tx
        assert still.status_code == 503 and still.json()["transaction"] == tx
        retried = journal.get(entry.key)
        assert retried is not None and (retried.state, retried.transaction) == (UNKNOWN, tx)
        assert reconcile(journal, chain.rpc_url)[0].changed is False  # not mined yet: left as is
        chain.rpc("evm_mine")
    finally:
        chain.rpc("evm_setAutomine", True)
    results = reconcile(journal, chain.rpc_url)
    assert [(r.key, r.state, r.changed, r.transaction) for r in results] == [(entry.key, SETTLED, True, tx)]
    after = journal.get(entry.key)
    assert after is not None and (after.state, after.transaction, after.amount) == (SETTLED, tx, PRICE)
    assert after.reconciled_at is not None and after.payer == payer


def _claimed(chain: DevChain, journal: SQLiteJournal, challenge: dict[str, Any], **overrides: Any) -> str:
    """A claimed row, as a process that crashed while the app ran leaves it (the verified event only)."""
    sig = pay_v2(challenge, key=chain.payer_keys[0], **overrides)
    wire = decode(sig)
    payment = Payment(chain.payer_addresses[0], PRICE, _requirements(sig), parse_payment_payload(wire))
    journal.record(PaymentEvent(VERIFIED, payment))
    return _key_of(sig)


@pytest.mark.anyio
async def test_a_claimed_row_past_valid_before_reconciles_to_failed(
    chain: DevChain, client: tuple[httpx.AsyncClient, SQLiteJournal, _Paid]
) -> None:
    c, journal, _ = client
    challenge = await _challenge(c)
    expired = _claimed(chain, journal, challenge, valid_before=latest_timestamp(chain) - 1)
    live = _claimed(chain, journal, challenge)
    assert [e.state for e in journal.entries()] == [CLAIMED, CLAIMED]
    table = _run("-m", "x402_middleware.journal", "--db", journal.path)
    assert "pending (2)" in table and "claimed" in table
    view = json.loads(
        _run("-m", "x402_middleware.journal", "--db", journal.path, "--rpc-url", chain.rpc_url, "--reconcile", "--json")
    )
    assert {(r["key"], r["state"], r["changed"]) for r in view["reconciled"]} == {
        (expired, FAILED, True),
        (live, CLAIMED, False),
    }
    assert [p["key"] for p in view["pending"]] == [live]
    gone = journal.get(expired)
    assert gone is not None and (gone.state, gone.reason) == (FAILED, EXPIRED_UNSETTLED)


@pytest.mark.anyio
async def test_a_row_whose_nonce_another_transfer_used_reconciles_to_failed(
    chain: DevChain, client: tuple[httpx.AsyncClient, SQLiteJournal, _Paid]
) -> None:
    c, journal, _ = client
    nonce = b"\x42" * 32
    key = _claimed(chain, journal, await _challenge(c), nonce=nonce)
    # The payer spends the same nonce on an authorization to someone else: our payment can never settle now.
    elsewhere = sign_authorization(chain, chain.payer_keys[0], to=chain.payer_addresses[1], value=1, nonce=nonce)
    chain.send(chain.facilitator_keys[0], chain.asset, elsewhere.calldata(TWA_VRS))
    (result,) = [r for r in reconcile(journal, chain.rpc_url) if r.key == key]
    assert (result.state, result.changed, result.note) == (FAILED, True, USED_ELSEWHERE)
    row = journal.get(key)
    assert row is not None and (row.state, row.reason) == (FAILED, USED_ELSEWHERE)


@pytest.mark.anyio
async def test_the_reconciler_runs_at_start_and_then_periodically(
    chain: DevChain, client: tuple[httpx.AsyncClient, SQLiteJournal, _Paid]
) -> None:
    c, journal, _ = client
    challenge = await _challenge(c)
    first = _claimed(chain, journal, challenge, valid_before=latest_timestamp(chain) - 1)
    reconciler = Reconciler(journal, chain.rpc_url, interval=0.2).start()
    try:
        assert journal.get(first).state == FAILED  # type: ignore[union-attr]  # the pass at start-up
        later = _claimed(chain, journal, challenge, valid_before=latest_timestamp(chain) - 1)
        for _ in range(50):
            if journal.get(later).state == FAILED:  # type: ignore[union-attr]
                break
            await anyio.sleep(0.1)
        assert journal.get(later).state == FAILED  # type: ignore[union-attr]
    finally:
        reconciler.stop()
