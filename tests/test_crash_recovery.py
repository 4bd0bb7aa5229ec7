"""A process killed (SIGKILL) after the money moved loses neither the customer's money nor its record (issue 15).

Real uvicorn processes of ``tests.apps:journal_app`` settle through the real :class:`OnChainFacilitator` on
the dev chain (anvil). Each scenario kills the process at one point, starts it again (or asks another
replica), checks the journal's operator view, resends the same payment with the same request and checks on
chain that the payer was charged exactly once.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._chain import start_dev_chain
from tests._payments import decode, pay_v2
from tests._servers import ROOT, uvicorn_server
from x402_middleware.devchain import DevChain

PRICE = 10_000  # $0.01
QUESTION = b"what is the weather?"


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    chain = start_dev_chain("base-sepolia", payers=5, facilitators=1)
    try:
        yield chain
    finally:
        chain.stop()


def _env(chain: DevChain, journal: str, **extra: str) -> dict[str, str]:
    return {
        "RPC_URL": chain.rpc_url,
        "FACILITATOR_KEY": chain.facilitator_keys[0],
        "NETWORK": chain.network,
        "PAY_TO": chain.pay_to,
        "JOURNAL": journal,
        **extra,
    }


def _sign(url: str, key: str) -> str:
    return pay_v2(decode(httpx.post(url + "/paid").headers["payment-required"]), key=key)


def _pay(url: str, signature: str, body: bytes = QUESTION) -> httpx.Response:
    return httpx.post(url + "/paid", content=body, headers={"PAYMENT-SIGNATURE": signature}, timeout=60)


def _killed_while_paying(url: str, signature: str) -> tuple[bytes, dict[str, str]]:
    """Send the payment to a server that dies: what the client got before the connection broke."""
    got, headers = b"", {}
    sent = {"PAYMENT-SIGNATURE": signature}
    stream = httpx.stream("POST", url + "/paid", content=QUESTION, headers=sent, timeout=60)
    with pytest.raises(httpx.HTTPError), stream as r:  # reset before the response, or mid-body
        headers = dict(r.headers)
        for chunk in r.iter_raw():
            got += chunk
    return got, headers


def _view(journal: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "x402_middleware.journal", "--db", journal, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    view: dict[str, Any] = json.loads(out.stdout)
    return view


def _tx(response: httpx.Response) -> str:
    return str(json.loads(base64.b64decode(response.headers["payment-response"]))["transaction"])


def _receipt_ok(chain: DevChain, tx: str) -> bool:
    receipt = chain.rpc("eth_getTransactionReceipt", tx)
    return bool(receipt and receipt["status"] == "0x1")


@pytest.mark.parametrize("kill_at", ["settled", "body"])
def test_killed_after_the_transfer_the_restarted_app_serves_the_retry_without_a_second_charge(
    chain: DevChain, tmp_path: Path, kill_at: str
) -> None:
    payer = 0 if kill_at == "settled" else 1
    journal = str(tmp_path / "journal.db")
    before = chain.balance_of(chain.payer_addresses[payer])
    with uvicorn_server("tests.apps:journal_app", factory=True, env=_env(chain, journal, KILL_AT=kill_at)) as url:
        signature = _sign(url, chain.payer_keys[payer])
        got, headers = _killed_while_paying(url, signature)
    if kill_at == "body":  # the client had the settlement header and half the body
        assert "payment-response" in headers and got == b"CONTENT:"
    else:
        assert got == b""
    assert chain.balance_of(chain.payer_addresses[payer]) == before - PRICE  # the money moved

    view = _view(journal)
    (unserved,) = view["unserved"]
    assert unserved["state"] == "settled" and unserved["payer"] == chain.payer_addresses[payer]
    assert _receipt_ok(chain, unserved["transaction"]) and view["states"]["unserved"] == 1

    with uvicorn_server("tests.apps:journal_app", factory=True, env=_env(chain, journal)) as url:
        other = _pay(url, signature, b"another question")
        assert other.status_code == 402 and other.json()["error"] == "payment_request_mismatch"
        served = _pay(url, signature)
        assert served.status_code == 200 and served.content == b"CONTENT:" + QUESTION
        assert _tx(served) == unserved["transaction"]
        again = _pay(url, signature)
        assert again.status_code == 402 and b"CONTENT" not in again.content
        # After a restart the app runs before the settlement says the payment is used: for the refused other
        # request and for the served retry; the third copy finds the store's settled record and never runs it.
        assert httpx.get(url + "/runs").text == "2"
    assert chain.balance_of(chain.payer_addresses[payer]) == before - PRICE  # charged once
    assert _view(journal)["unserved"] == []


def test_killed_before_the_journal_wrote_the_settlement_reconcile_finds_it_on_chain(
    chain: DevChain, tmp_path: Path
) -> None:
    journal = str(tmp_path / "journal.db")
    payer = 2
    before = chain.balance_of(chain.payer_addresses[payer])
    env = _env(chain, journal, KILL_AT="before-journal")
    with uvicorn_server("tests.apps:journal_app", factory=True, env=env) as url:
        signature = _sign(url, chain.payer_keys[payer])
        _killed_while_paying(url, signature)
    (row,) = _view(journal)["pending"]
    assert row["state"] == "settling" and row["transaction"] == ""  # the crash came before the tx was written

    with uvicorn_server("tests.apps:journal_app", factory=True, env=_env(chain, journal, RECONCILE="1")) as url:
        (unserved,) = _view(journal)["unserved"]  # reconciled at start-up: the Transfer was found on chain
        assert _receipt_ok(chain, unserved["transaction"])
        served = _pay(url, signature)
        assert served.status_code == 200 and _tx(served) == unserved["transaction"]
    assert chain.balance_of(chain.payer_addresses[payer]) == before - PRICE


def test_a_replica_killed_after_the_transfer_the_other_replica_serves_the_retry(
    chain: DevChain, redis_url: str, postgres_url: str
) -> None:
    """Two replicas on one Redis store and one PostgreSQL journal: the retry goes to the replica that lived."""
    payer = 3
    before = chain.balance_of(chain.payer_addresses[payer])
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": f"t-{uuid.uuid4().hex}:"}
    with ExitStack() as stack:
        doomed = stack.enter_context(
            uvicorn_server(
                "tests.apps:journal_app", factory=True, env=_env(chain, postgres_url, KILL_AT="settled", **shared)
            )
        )
        alive = stack.enter_context(
            uvicorn_server("tests.apps:journal_app", factory=True, env=_env(chain, postgres_url, **shared))
        )
        signature = _sign(doomed, chain.payer_keys[payer])
        _killed_while_paying(doomed, signature)
        unserved = [row for row in _view(postgres_url)["unserved"] if row["payer"] == chain.payer_addresses[payer]]
        assert len(unserved) == 1
        served = _pay(alive, signature)
        assert served.status_code == 200 and served.content == b"CONTENT:" + QUESTION
        assert _tx(served) == unserved[0]["transaction"]
        assert _pay(alive, signature).status_code == 402
    assert chain.balance_of(chain.payer_addresses[payer]) == before - PRICE
