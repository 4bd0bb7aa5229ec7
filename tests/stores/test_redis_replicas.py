"""Two uvicorn replicas of a paid app, and two of the paid gateway, settling on the dev chain and sharing one
Redis (issue 15): 100 concurrent copies of one payment spread over both run the app (the upstream) once and
move the money once, with no reverted transaction. The same app replicas on their own process memory (the
default store) run it on both, which is what the shared store is for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from examples.gateway.emulator import EmulatorServer
from tests._chain import start_dev_chain
from tests._payments import decode, pay_v2
from tests._servers import uvicorn_server
from x402_middleware.devchain import DevChain

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


def test_two_gateway_replicas_sharing_redis_call_the_upstream_once_for_100_copies_of_a_payment(
    chain: DevChain, redis_url: str
) -> None:
    payer = chain.payer_addresses[2]
    before = chain.balance_of(payer)
    with ExitStack() as stack:
        emulator = stack.enter_context(EmulatorServer())
        env = {
            "RPC_URL": chain.rpc_url,
            "NETWORK": chain.network,
            "PAY_TO": chain.pay_to,
            "EMULATOR_URL": emulator.url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"t-{uuid.uuid4().hex}:",
        }
        urls = [
            stack.enter_context(
                uvicorn_server("tests.apps:gateway_replica", factory=True, env={**env, "FACILITATOR_KEY": key})
            )
            for key in chain.facilitator_keys[:2]
        ]
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
        upstream_calls = sum(r["count"] for r in httpx.get(emulator.url + "/_control").json()["requests"])
    assert sorted(a.status_code for a in answers) == [200] + [402] * (COPIES - 1)
    refused = {a.json()["error"] for a in answers if a.status_code == 402}
    assert refused <= {"payment_in_progress", "invalid_exact_evm_nonce_already_used"}
    assert upstream_calls == 1
    assert [r["status"] for r in _transactions(chain, first)] == ["0x1"]
    assert chain.balance_of(payer) == before - int(challenge["accepts"][0]["amount"])
