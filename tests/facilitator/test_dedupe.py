"""One payment, one transaction: duplicates follow it, unconfigured tokens are refused, a lost tx is re-sent.

Judged on the dev chain: Transfer logs, reverted receipts and the signers' transaction counts over the
blocks mined during each test.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address

from tests._payments import decode, pay_v2
from tests._servers import process_with_url
from x402_middleware.devchain import DevChain, encode_call
from x402_middleware.devchain import _abi as devchain_abi
from x402_middleware.evm.transactions import build_transaction, sign_transaction
from x402_middleware.facilitator.onchain import (
    ASSET_NOT_ALLOWED,
    NONCE_ALREADY_USED,
    SETTLEMENT_PENDING,
    OnChainFacilitator,
    transfer_calldata,
)
from x402_middleware.models import parse_payment_payload, parse_requirements

pytestmark = pytest.mark.anyio
PRICE = 1000
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def _challenge(chain: DevChain, asset: str | None = None, name: str | None = None) -> dict[str, Any]:
    return {
        "x402Version": 2,
        "resource": {"url": "http://x/p"},
        "accepts": [
            {
                "scheme": "exact",
                "network": chain.network,
                "amount": str(PRICE),
                "payTo": chain.pay_to,
                "asset": asset or chain.asset,
                "maxTimeoutSeconds": 300,
                "extra": {"name": name or chain.token_name, "version": chain.token_version},
            }
        ],
    }


def _body(chain: DevChain, key: str, asset: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A /settle request body: one freshly signed payment."""
    challenge = _challenge(chain, asset, name)
    return {
        "x402Version": 2,
        "paymentPayload": decode(pay_v2(challenge, key=key)),
        "paymentRequirements": challenge["accepts"][0],
    }


def _parsed(body: dict[str, Any]) -> tuple[Any, Any]:
    payload = parse_payment_payload(body["paymentPayload"])
    return payload, parse_requirements(body["paymentRequirements"], 2)


def _mined_since(chain: DevChain, block: int) -> list[dict[str, Any]]:
    """Receipts of every transaction in the blocks after ``block``."""
    receipts = []
    for number in range(block + 1, int(chain.rpc("eth_blockNumber"), 16) + 1):
        for tx in chain.rpc("eth_getBlockByNumber", hex(number), False)["transactions"]:
            receipts.append(chain.rpc("eth_getTransactionReceipt", tx))
    return receipts


def _transfers(receipts: list[dict[str, Any]], asset: str, payer: str) -> int:
    topic = "0x" + payer[2:].lower().rjust(64, "0")
    return sum(
        1
        for r in receipts
        for log in r["logs"]
        if log["address"].lower() == asset.lower() and log["topics"][:2] == [TRANSFER_TOPIC, topic]
    )


def _sent(chain: DevChain) -> int:
    """Transactions sent so far by the dev chain's facilitator keys (pending ones included)."""
    return sum(int(chain.rpc("eth_getTransactionCount", a, "pending"), 16) for a in chain.facilitator_addresses)


def _deploy_other_token(chain: DevChain, payer: str) -> str:
    """A second TestUSDC ("Other Coin") at its own address, with ``payer`` funded in it."""
    token = devchain_abi.contract("TestUSDC")
    initcode = bytes.fromhex(token["bytecode"][2:]) + abi_encode(["string"], ["Other Coin"])
    address = to_checksum_address(chain.send(chain.deployer_key, None, initcode)["contractAddress"])
    chain.send(chain.deployer_key, address, encode_call("mint(address,uint256)", payer, 10**9))
    return str(address)


@contextmanager
def _server(chain: DevChain, *extra: str) -> Iterator[str]:
    args = [sys.executable, "-m", "x402_middleware.facilitator", "--rpc-url", chain.rpc_url, "--port", "0"]
    args += ["--network", chain.network, "--key", chain.facilitator_keys[0], "--key", chain.facilitator_keys[1]]
    with process_with_url([*args, *extra]) as url:
        yield url


@contextmanager
def _automine_off(chain: DevChain) -> Iterator[None]:
    chain.rpc("evm_setAutomine", False)
    try:
        yield
    finally:
        chain.rpc("evm_setAutomine", True)


async def test_20_concurrent_copies_through_the_server_make_one_transfer_and_no_reverts(chain: DevChain) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    body = _body(chain, key)
    with _server(chain) as url:
        block, sent = int(chain.rpc("eth_blockNumber"), 16), _sent(chain)
        before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            answers = await asyncio.gather(*(c.post("/settle", json=body) for _ in range(20)))
    results = [a.json() for a in answers]
    assert [a.status_code for a in answers] == [200] * 20
    winners = [r for r in results if r["success"]]
    assert len(winners) == 1, results
    assert {r["errorReason"] for r in results if not r["success"]} == {NONCE_ALREADY_USED}
    receipts = _mined_since(chain, block)
    assert _sent(chain) - sent == 1 and len(receipts) == 1
    assert [int(r["status"], 16) for r in receipts] == [1]  # no reverted transaction paid gas
    assert receipts[0]["transactionHash"] == winners[0]["transaction"]
    assert _transfers(receipts, chain.asset, payer) == 1
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - PRICE, before[1] + PRICE)


async def test_a_token_nobody_configured_is_refused_without_a_transaction(chain: DevChain) -> None:
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    other = _deploy_other_token(chain, payer)
    body = _body(chain, key, asset=other, name="Other Coin")
    with _server(chain) as url:
        block, sent = int(chain.rpc("eth_blockNumber"), 16), _sent(chain)
        pay_to_before = chain.balance_of(chain.pay_to)
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            settled = (await c.post("/settle", json=body)).json()
            verified = (await c.post("/verify", json=body)).json()
            supported = (await c.get("/supported")).json()
    assert settled["success"] is False and settled["errorReason"] == ASSET_NOT_ALLOWED
    assert "--allow-asset" in settled["errorMessage"] and other in settled["errorMessage"]
    assert verified["isValid"] is False and verified["invalidReason"] == ASSET_NOT_ALLOWED
    assert {"x402Version": 2, "scheme": "exact", "network": chain.network} in supported["kinds"]
    assert _sent(chain) == sent and int(chain.rpc("eth_blockNumber"), 16) == block
    nonce = bytes.fromhex(body["paymentPayload"]["payload"]["authorization"]["nonce"][2:])
    used = encode_call("authorizationState(address,bytes32)", payer, nonce)
    assert chain.call(other, used) == bytes(32) and chain.balance_of(chain.pay_to) == pay_to_before

    # Configured explicitly, the same token settles.
    with _server(chain, "--allow-asset", other) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            allowed = (await c.post("/settle", json=body)).json()
            usdc = (await c.post("/settle", json=_body(chain, key))).json()
    assert allowed["success"] is True and usdc["success"] is True
    assert int.from_bytes(chain.call(other, used), "big") == 1


async def test_a_slow_receipt_is_followed_not_sent_again(chain: DevChain) -> None:
    key, payer = chain.payer_keys[2], chain.payer_addresses[2]
    payload, requirements = _parsed(_body(chain, key))
    fac = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network, receipt_timeout=0.5)
    block, sent = int(chain.rpc("eth_blockNumber"), 16), _sent(chain)
    try:
        with _automine_off(chain):
            first = await fac.settle(payload, requirements)
            assert first.success is False and first.error_reason == SETTLEMENT_PENDING and first.transaction
            still = await fac.settle(payload, requirements)  # still unmined: the same hash again
            assert still.error_reason == SETTLEMENT_PENDING and still.transaction == first.transaction
            chain.rpc("evm_mine")
        second = await fac.settle(payload, requirements)
        third = await fac.settle(payload, requirements)
    finally:
        await fac.aclose()
    assert second.success is True and second.transaction == first.transaction and second.amount == PRICE
    assert (
        third.success is False and third.error_reason == NONCE_ALREADY_USED and third.transaction == first.transaction
    )
    receipts = _mined_since(chain, block)
    assert _sent(chain) - sent == 1 and [int(r["status"], 16) for r in receipts] == [1]
    assert _transfers(receipts, chain.asset, payer) == 1


async def test_a_mined_revert_stays_a_failure_and_is_never_retried(chain: DevChain) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    body = _body(chain, key)
    payload, requirements = _parsed(body)
    fac = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network, receipt_timeout=0.3)
    try:
        with _automine_off(chain):
            pending = await fac.settle(payload, requirements)
            assert pending.error_reason == SETTLEMENT_PENDING
            # Someone else spends the same authorization first (higher tip: earlier in the same block).
            rival = chain.facilitator_keys[3]
            nonce = int(chain.rpc("eth_getTransactionCount", chain.facilitator_addresses[3], "pending"), 16)
            tx = build_transaction(
                chain_id=chain.chain_id,
                nonce=nonce,
                to=chain.asset,
                data=transfer_calldata(payload),
                gas=200_000,
                max_fee_per_gas=50 * 10**9,
                max_priority_fee_per_gas=20 * 10**9,
            )
            rival_hash = chain.rpc(
                "eth_sendRawTransaction", "0x" + sign_transaction(bytes.fromhex(rival[2:]), tx)[0].hex()
            )
            block, sent = int(chain.rpc("eth_blockNumber"), 16), _sent(chain)
            chain.rpc("evm_mine")
        failed = await fac.settle(payload, requirements)
        again = await fac.settle(payload, requirements)
    finally:
        await fac.aclose()
    assert int(chain.rpc("eth_getTransactionReceipt", rival_hash)["status"], 16) == 1
    assert failed.success is False and failed.error_reason == "invalid_exact_evm_transaction_failed"
    assert failed.transaction == pending.transaction
    assert again.error_reason == failed.error_reason and again.transaction == pending.transaction
    receipts = _mined_since(chain, block)
    assert sorted(int(r["status"], 16) for r in receipts) == [0, 1] and _sent(chain) == sent
    assert _transfers(receipts, chain.asset, payer) == 1


async def test_a_transaction_the_node_dropped_is_sent_again_and_unblocks_its_signer(chain: DevChain) -> None:
    """A lost transaction leaves a nonce gap: without re-sending it, every later settlement of that key
    waits the whole receipt_timeout (the 30 s stalls under load)."""
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    fac = OnChainFacilitator(
        chain.rpc_url, chain.facilitator_keys[:1], network=chain.network, receipt_timeout=8, rebroadcast_after=0.3
    )
    first, later = _parsed(_body(chain, key)), _parsed(_body(chain, key))
    block = int(chain.rpc("eth_blockNumber"), 16)
    try:
        with _automine_off(chain):
            task = asyncio.create_task(fac.settle(*first))
            for _ in range(200):  # until the transfer sits in the node's pool
                pool = chain.rpc("txpool_content")["pending"]
                if pool:
                    break
                await asyncio.sleep(0.01)
            (lost,) = [tx["hash"] for txs in pool.values() for tx in txs.values()]
            chain.rpc("anvil_dropTransaction", lost)
        t0 = time.monotonic()
        results = [await task, await fac.settle(*later)]
        elapsed = time.monotonic() - t0
    finally:
        await fac.aclose()
    assert [r.success for r in results] == [True, True] and results[0].transaction == lost
    assert elapsed < 4, f"the settlements waited {elapsed:.1f} s behind a lost transaction"
    receipts = _mined_since(chain, block)
    assert [int(r["status"], 16) for r in receipts] == [1, 1] and _transfers(receipts, chain.asset, payer) == 2
