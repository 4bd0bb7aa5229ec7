"""Money attacks on a plain app with the real OnChainFacilitator, judged on the dev chain (anvil).

Each test reproduces an attack or an unlucky client from issue 14 against a real uvicorn process (or the
middleware in-process for the slow-receipt case) and reads balances and nonce state back from the chain.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from eth_account import Account

from tests._chain import start_dev_chain
from tests._payments import decode, pay_v2
from tests._servers import uvicorn_server
from x402_middleware import FacilitatorError, PaymentMiddleware
from x402_middleware.devchain import DevChain
from x402_middleware.facilitator import OnChainFacilitator

PRICE = 10_000  # $0.01 in USDC atomic units


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    chain = start_dev_chain("base-sepolia", payers=2, facilitators=1)
    try:
        yield chain
    finally:
        chain.stop()


def _env(chain: DevChain, **extra: str) -> dict[str, str]:
    return {
        "RPC_URL": chain.rpc_url,
        "FACILITATOR_KEY": chain.facilitator_keys[0],
        "NETWORK": chain.network,
        "PAY_TO": chain.pay_to,
        **extra,
    }


def _challenge(url: str) -> dict[str, Any]:
    r = httpx.get(url + "/slow")
    assert r.status_code == 402
    return decode(r.headers["payment-required"])  # type: ignore[no-any-return]


def _runs(url: str) -> int:
    return int(httpx.get(url + "/runs").text)


def _nonce(sig: str) -> bytes:
    return bytes.fromhex(decode(sig)["payload"]["authorization"]["nonce"][2:])


def test_a_client_that_leaves_before_the_response_starts_is_not_charged(chain: DevChain) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    with uvicorn_server("tests.apps:onchain_app", factory=True, env=_env(chain, APP_DELAY="1.0")) as url:
        sig = pay_v2(_challenge(url), key=key)
        before, pay_to_before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(f"GET /slow HTTP/1.1\r\nHost: {parts.netloc}\r\nPAYMENT-SIGNATURE: {sig}\r\n\r\n".encode())
            time.sleep(0.3)  # the app is working; the client gives up
        time.sleep(1.5)  # the app finished and started its 200 to a client that is gone
        assert _runs(url) == 1
        assert chain.balance_of(payer) == before and chain.balance_of(chain.pay_to) == pay_to_before
        assert chain.authorization_state(payer, _nonce(sig)) is False  # the signature is still usable
        r = httpx.get(url + "/slow", headers={"PAYMENT-SIGNATURE": sig}, timeout=30)
    assert r.status_code == 200 and r.text == "CONTENT"
    assert chain.balance_of(payer) == before - PRICE and chain.authorization_state(payer, _nonce(sig)) is True


@pytest.mark.parametrize("check_funds", ["0", "1"])
def test_an_unfunded_signature_is_served_at_most_once_and_then_burned(chain: DevChain, check_funds: str) -> None:
    empty = Account.create()
    with uvicorn_server("tests.apps:onchain_app", factory=True, env=_env(chain, CHECK_FUNDS=check_funds)) as url:
        sig = pay_v2(_challenge(url), key=empty.key.hex())
        pay_to_before = chain.balance_of(chain.pay_to)
        answers = [httpx.get(url + "/slow", headers={"PAYMENT-SIGNATURE": sig}, timeout=30) for _ in range(20)]
        runs = _runs(url)
    assert [a.status_code for a in answers] == [402] * 20 and all(b"CONTENT" not in a.content for a in answers)
    assert {a.json()["error"] for a in answers} == {"invalid_exact_evm_insufficient_balance"}
    # Without the funds check the app runs once (settlement refuses, the signature is burned); with it, never.
    assert runs == (1 if check_funds == "0" else 0)
    assert chain.balance_of(chain.pay_to) == pay_to_before


@pytest.mark.anyio
async def test_a_slow_receipt_answers_503_and_the_retry_is_served_without_a_second_charge(chain: DevChain) -> None:
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys, network=chain.network, receipt_timeout=0.3)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"CONTENT"})

    paid = PaymentMiddleware(
        app, routes={"GET /slow": "$0.01"}, pay_to=chain.pay_to, network=chain.network, facilitator=facilitator
    )
    before = chain.balance_of(payer)
    chain.rpc("evm_setAutomine", False)  # receipts now come only when a block is mined by hand
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=paid), base_url="http://t") as c:
            challenge = decode((await c.get("/slow")).headers["payment-required"])
            sig = pay_v2(challenge, key=key)
            pending = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
            assert pending.status_code == 503 and pending.headers["retry-after"] == "5"
            assert pending.json()["error"] == "settlement_pending" and b"CONTENT" not in pending.content
            tx = pending.json()["transaction"]
            still = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
            assert still.status_code == 503 and still.json()["transaction"] == tx  # followed, not sent again
            chain.rpc("evm_mine")
            served = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
            replay = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
    finally:
        chain.rpc("evm_setAutomine", True)
        await facilitator.aclose()
    assert served.status_code == 200 and served.content == b"CONTENT"
    assert decode(served.headers["payment-response"])["transaction"] == tx
    assert replay.status_code == 402 and replay.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert chain.balance_of(payer) == before - PRICE  # charged exactly once


class _LosesFirstAnswer:
    """Test double around the real facilitator: the first settle happens on chain, then its answer is lost."""

    def __init__(self, inner: OnChainFacilitator) -> None:
        self.inner = inner
        self.lost = False

    async def verify(self, payload: Any, requirements: Any) -> Any:
        return await self.inner.verify(payload, requirements)

    async def supported(self) -> dict[str, Any]:
        return await self.inner.supported()

    async def settle(self, payload: Any, requirements: Any) -> Any:
        result = await self.inner.settle(payload, requirements)
        if not self.lost:
            self.lost = True
            raise FacilitatorError("the /settle answer was lost (test double)")
        return result


@pytest.mark.anyio
async def test_a_lost_settle_answer_is_served_on_retry_without_a_second_charge(chain: DevChain) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    inner = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys, network=chain.network)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"CONTENT"})

    paid = PaymentMiddleware(
        app,
        routes={"GET /slow": "$0.01"},
        pay_to=chain.pay_to,
        network=chain.network,
        facilitator=_LosesFirstAnswer(inner),
    )
    before = chain.balance_of(payer)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=paid), base_url="http://t") as c:
            sig = pay_v2(decode((await c.get("/slow")).headers["payment-required"]), key=key)
            lost = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
            assert chain.balance_of(payer) == before - PRICE  # the money moved; the answer did not arrive
            assert lost.status_code == 503 and lost.json()["error"] == "settlement_unknown"
            served = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
            replay = await c.get("/slow", headers={"PAYMENT-SIGNATURE": sig})
    finally:
        await inner.aclose()
    assert served.status_code == 200 and served.content == b"CONTENT"
    tx = decode(served.headers["payment-response"])["transaction"]
    assert chain.rpc("eth_getTransactionReceipt", tx)["status"] == "0x1"
    assert replay.status_code == 402 and chain.balance_of(payer) == before - PRICE  # charged exactly once


def test_head_with_a_valid_payment_runs_nothing_and_leaves_it_usable(chain: DevChain) -> None:
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    with uvicorn_server("tests.apps:onchain_app", factory=True, env=_env(chain)) as url:
        sig = pay_v2(_challenge(url), key=key)
        before = chain.balance_of(payer)
        head = httpx.head(url + "/slow", headers={"PAYMENT-SIGNATURE": sig})
        assert head.status_code == 402 and _runs(url) == 0 and chain.balance_of(payer) == before
        r = httpx.get(url + "/slow", headers={"PAYMENT-SIGNATURE": sig}, timeout=30)
        assert r.status_code == 200 and _runs(url) == 1 and chain.balance_of(payer) == before - PRICE
