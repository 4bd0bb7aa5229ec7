"""Two uvicorn replicas of a paid app, and two of the paid gateway, settling on the dev chain and sharing one
Redis (issue 15): 100 concurrent copies of one payment spread over both run the app (the upstream) once and
move the money once, with no reverted transaction. The same app replicas on their own process memory (the
default store) run it on both, which is what the shared store is for."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.gateway.emulator import EmulatorServer
from tests._chain import start_dev_chain
from tests._payments import decode, pay_v2
from tests._servers import uvicorn_server
from x402_middleware.devchain import DevChain
from x402_middleware.journal import SQLiteJournal

PRICE = 10_000  # $0.01
COPIES = 100


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    chain = start_dev_chain("base-sepolia", payers=3, facilitators=2)
    try:
        yield chain
    finally:
        chain.stop()


def _transactions(chain: DevChain, first: int) -> list[dict[str, Any]]:
    """Receipts of every transaction mined from block ``first`` on."""
    last = int(chain.rpc("eth_blockNumber"), 16)
    hashes = [
        tx for n in range(first, last + 1) for tx in chain.rpc("eth_getBlockByNumber", hex(n), False)["transactions"]
    ]
    return [chain.rpc("eth_getTransactionReceipt", h) for h in hashes]


def _storm(
    chain: DevChain, payer: int, redis_url: str | None
) -> tuple[list[httpx.Response], int, list[dict[str, Any]]]:
    env = {
        "RPC_URL": chain.rpc_url,
        "NETWORK": chain.network,
        "PAY_TO": chain.pay_to,
        "APP_DELAY": "1.0",  # every copy arrives while the first is still being served
        **({"REDIS_URL": redis_url, "REDIS_PREFIX": f"t-{uuid.uuid4().hex}:"} if redis_url else {}),
    }
    with ExitStack() as stack:
        urls = [  # each replica its own gas key: two facilitators on one key would race for its nonces
            stack.enter_context(
                uvicorn_server("tests.apps:replica_app", factory=True, env={**env, "FACILITATOR_KEY": key})
            )
            for key in chain.facilitator_keys[:2]
        ]
        sig = pay_v2(decode(httpx.get(urls[0] + "/slow").headers["payment-required"]), key=chain.payer_keys[payer])
        first = int(chain.rpc("eth_blockNumber"), 16) + 1
        with ThreadPoolExecutor(COPIES) as pool:
            answers = list(
                pool.map(
                    lambda i: httpx.get(urls[i % 2] + "/slow", headers={"PAYMENT-SIGNATURE": sig}, timeout=60),
                    range(COPIES),
                )
            )
        runs = sum(int(httpx.get(url + "/runs").text) for url in urls)
    return answers, runs, _transactions(chain, first)


def test_two_replicas_sharing_redis_serve_a_payment_once_with_one_transfer(chain: DevChain, redis_url: str) -> None:
    payer = chain.payer_addresses[0]
    before = chain.balance_of(payer)
    answers, runs, receipts = _storm(chain, 0, redis_url)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [402] * (COPIES - 1)
    assert [a.content for a in answers if a.status_code == 200] == [b"CONTENT"]
    refused = {a.json()["error"] for a in answers if a.status_code == 402}
    assert refused <= {"payment_in_progress", "invalid_exact_evm_nonce_already_used"}
    assert all(b"CONTENT" not in a.content for a in answers if a.status_code == 402)
    assert runs == 1
    assert [r["status"] for r in receipts] == ["0x1"]  # one transfer, no reverted transaction
    assert chain.balance_of(payer) == before - PRICE


def test_two_replicas_on_process_memory_run_the_app_on_both(chain: DevChain) -> None:
    payer = chain.payer_addresses[1]
    before = chain.balance_of(payer)
    answers, runs, _ = _storm(chain, 1, None)
    assert runs == 2  # each replica claimed the payment in its own memory
    assert chain.balance_of(payer) == before - PRICE  # the chain still charges once
    assert sum(a.status_code == 200 for a in answers) == 1


CHAT = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}


@contextmanager
def _gateways(chain: DevChain, redis_url: str, **extra: str) -> Iterator[tuple[str, list[str]]]:
    """The emulator and two gateway replicas on one Redis, each with its own facilitator key."""
    with ExitStack() as stack:
        emulator = stack.enter_context(EmulatorServer())
        env = {
            "RPC_URL": chain.rpc_url,
            "NETWORK": chain.network,
            "PAY_TO": chain.pay_to,
            "EMULATOR_URL": emulator.url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"t-{uuid.uuid4().hex}:",
            **extra,
        }
        urls = [
            stack.enter_context(
                uvicorn_server("tests.apps:gateway_replica", factory=True, env={**env, "FACILITATOR_KEY": key})
            )
            for key in chain.facilitator_keys[:2]
        ]
        yield emulator.url, urls


def test_two_gateway_replicas_sharing_redis_call_the_upstream_once_for_100_copies_of_a_payment(
    chain: DevChain, redis_url: str
) -> None:
    payer = chain.payer_addresses[2]
    before = chain.balance_of(payer)
    with _gateways(chain, redis_url) as (emulator_url, urls):
        path = "/api/v1/chat/completions"
        challenge = decode(httpx.post(urls[0] + path, json=CHAT).headers["payment-required"])
        sig = pay_v2(challenge, key=chain.payer_keys[2])
        first = int(chain.rpc("eth_blockNumber"), 16) + 1
        with ThreadPoolExecutor(COPIES) as pool:
            answers = list(
                pool.map(
                    lambda i: httpx.post(urls[i % 2] + path, json=CHAT, headers={"PAYMENT-SIGNATURE": sig}, timeout=60),
                    range(COPIES),
                )
            )
        upstream_calls = sum(r["count"] for r in httpx.get(emulator_url + "/_control").json()["requests"])
    assert sorted(a.status_code for a in answers) == [200] + [402] * (COPIES - 1)
    refused = {a.json()["error"] for a in answers if a.status_code == 402}
    assert refused <= {"payment_in_progress", "invalid_exact_evm_nonce_already_used"}
    assert upstream_calls == 1
    assert [r["status"] for r in _transactions(chain, first)] == ["0x1"]
    assert chain.balance_of(payer) == before - int(challenge["accepts"][0]["amount"])


SOAK = 300


async def _send_all(urls: list[str], path: str, signatures: list[str]) -> list[tuple[httpx.Response, float]]:
    """Every payment once, half to each replica, 16 at a time: each answer with its own duration (s)."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=16)) as client:

        async def one(i: int, signature: str) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            answer = await client.post(urls[i % 2] + path, json=CHAT, headers={"PAYMENT-SIGNATURE": signature})
            return answer, time.monotonic() - started

        return await asyncio.gather(*(one(i, sig) for i, sig in enumerate(signatures)))


def test_soak_distinct_payments_through_two_gateway_replicas_balance_on_chain_and_in_the_journal(
    chain: DevChain, redis_url: str, tmp_path: Path
) -> None:
    """The soak in small (benchmarks/soak.py runs 10,000): on-chain = journal = 200s x price, none slow."""
    journal = str(tmp_path / "journal.db")
    with _gateways(chain, redis_url, JOURNAL=journal) as (_, urls):
        path = "/api/v1/chat/completions"
        challenge = decode(httpx.post(urls[0] + path, json=CHAT).headers["payment-required"])
        price = int(challenge["accepts"][0]["amount"])
        signatures = [pay_v2(challenge, key=chain.payer_keys[i % 3]) for i in range(SOAK)]
        before = chain.balance_of(chain.pay_to)
        answers = asyncio.run(_send_all(urls, path, signatures))
    assert [a.status_code for a, _ in answers] == [200] * SOAK
    assert max(seconds for _, seconds in answers) < 30  # the settle timeout: nobody waited on a stuck settlement
    with SQLiteJournal(journal) as book:
        settled = book.entries("settled")
        assert book.entries("claimed", "settling", "unknown") == []
    assert chain.balance_of(chain.pay_to) - before == sum(e.amount for e in settled) == SOAK * price
    assert all(e.served_at is not None for e in settled) and len(settled) == SOAK
