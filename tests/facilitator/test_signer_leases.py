"""Several facilitator processes on one pool of gas keys (issue 15): each key is leased to one process on a real
Redis, so no two processes ever send from one key; a lost lease is noticed; settlements through both processes
at once all succeed with no replaced or reverted transaction."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import redis

from tests._payments import decode, pay_v2
from tests._servers import ROOT, live_process
from x402_middleware import ConfigurationError
from x402_middleware.devchain import DevChain
from x402_middleware.facilitator.leases import RedisSignerLeases

PRICE = 1000


def _body(chain: DevChain, key: str) -> dict[str, object]:
    accepts = {
        "scheme": "exact",
        "network": chain.network,
        "amount": str(PRICE),
        "payTo": chain.pay_to,
        "asset": chain.asset,
        "maxTimeoutSeconds": 300,
        "extra": {"name": chain.token_name, "version": chain.token_version},
    }
    challenge = {"x402Version": 2, "resource": {"url": "http://x/p"}, "accepts": [accepts]}
    return {"x402Version": 2, "paymentPayload": decode(pay_v2(challenge, key=key)), "paymentRequirements": accepts}


def test_leases_give_each_process_its_own_keys_and_notice_a_lost_one(chain: DevChain, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = "t-leases:"
    keys = chain.facilitator_keys[:3]
    lost: list[str] = []
    found = threading.Event()

    def on_lost(address: str) -> None:
        lost.append(address)
        found.set()

    first = RedisSignerLeases(client, chain_id=chain.chain_id, ttl=3, prefix=prefix, on_lost=on_lost)
    second = RedisSignerLeases(client, chain_id=chain.chain_id, ttl=3, prefix=prefix)
    try:
        mine = first.acquire(keys, limit=2)
        theirs = second.acquire(keys)
        assert mine == keys[:2] and theirs == keys[2:]  # disjoint, and together the whole pool
        with pytest.raises(ConfigurationError, match="leased by other facilitator processes"):
            RedisSignerLeases(client, chain_id=chain.chain_id, ttl=3, prefix=prefix).acquire(keys)
        stolen = first.held[0]
        client.set(f"{prefix}{chain.chain_id}:{stolen.lower()}", "someone else")  # taken over behind its back
        assert found.wait(5) and lost == [stolen] and stolen not in first.held
    finally:
        first.release()
        second.release()
    assert not [k for k in client.scan_iter(prefix + "*") if client.get(k) != b"someone else"]  # all given back


@contextmanager
def _facilitator(chain: DevChain, redis_url: str, *extra: str) -> Iterator[tuple[str, list[str]]]:
    args = [sys.executable, "-m", "x402_middleware.facilitator", "--rpc-url", chain.rpc_url, "--port", "0"]
    args += ["--network", chain.network, "--redis-url", redis_url, *extra]
    for key in chain.facilitator_keys[:4]:
        args += ["--key", key]
    with live_process(args) as live:
        line = next(line for line in live.output if line.startswith("{"))
        yield live.url, json.loads(line)["signers"]


async def _settle_all(urls: list[str], bodies: list[dict[str, object]]) -> list[dict[str, object]]:
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(
            *(client.post(urls[i % len(urls)] + "/settle", json=body) for i, body in enumerate(bodies))
        )
    return [a.json() for a in answers]


def test_two_facilitator_processes_on_one_key_pool_settle_side_by_side_without_nonce_collisions(
    chain: DevChain, redis_url: str
) -> None:
    with ExitStack() as stack:
        (url_a, signers_a), (url_b, signers_b) = (
            stack.enter_context(_facilitator(chain, redis_url, "--lease-keys", "2")) for _ in range(2)
        )
        assert len(signers_a) == len(signers_b) == 2 and not set(signers_a) & set(signers_b)
        third = subprocess.run(
            [sys.executable, "-m", "x402_middleware.facilitator", "--rpc-url", chain.rpc_url, "--port", "0"]
            + ["--network", chain.network, "--redis-url", redis_url]
            + [arg for key in chain.facilitator_keys[:4] for arg in ("--key", key)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert third.returncode != 0 and "leased by other facilitator processes" in third.stderr
        bodies = [_body(chain, key) for key in chain.payer_keys for _ in range(8)]
        block = int(chain.rpc("eth_blockNumber"), 16)
        results = asyncio.run(_settle_all([url_a, url_b], bodies))
    assert all(r["success"] for r in results), [r for r in results if not r["success"]][:3]
    receipts = [
        chain.rpc("eth_getTransactionReceipt", tx)
        for n in range(block + 1, int(chain.rpc("eth_blockNumber"), 16) + 1)
        for tx in chain.rpc("eth_getBlockByNumber", hex(n), False)["transactions"]
    ]
    assert len(receipts) == len(bodies) and {r["status"] for r in receipts} == {"0x1"}
    senders = {r["from"].lower() for r in receipts}
    assert senders <= {s.lower() for s in signers_a + signers_b} and len(senders) == 4
