"""The facilitator's transport: direct EIP-1559 signing equals eth-account's, and batched JSON-RPC keeps per-call
results and errors apart (against the real dev chain)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address

from x402_middleware.devchain import DevChain
from x402_middleware.evm.jsonrpc import RPCError
from x402_middleware.evm.transactions import build_transaction, sign_transaction
from x402_middleware.facilitator._rpc import AsyncRPC


@pytest.mark.parametrize("seed", range(25))
def test_sign_transaction_matches_eth_account(seed: int) -> None:
    key = secrets.token_bytes(32)
    tx = build_transaction(
        chain_id=[1, 8453, 84532, 31337][seed % 4],
        nonce=0 if seed % 5 == 0 else secrets.randbelow(2**40),
        to=None if seed % 7 == 0 else to_checksum_address("0x" + secrets.token_hex(20)),
        data=secrets.token_bytes(secrets.randbelow(300)),
        gas=secrets.randbelow(10**7),
        max_fee_per_gas=secrets.randbelow(10**12),
        max_priority_fee_per_gas=secrets.randbelow(10**9),
        value=0 if seed % 2 else secrets.randbelow(10**20),
    )
    reference = Account.from_key(key).sign_transaction(tx)
    assert sign_transaction(key, tx) == (bytes(reference.raw_transaction), "0x" + bytes(reference.hash).hex())


@pytest.mark.anyio
async def test_concurrent_calls_are_batched_and_keep_their_own_results(sepolia: DevChain) -> None:
    rpc = AsyncRPC(sepolia.rpc_url)
    posts = 0
    original = rpc._post

    async def counting_post(*args: object, **kwargs: object) -> object:
        nonlocal posts
        posts += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    rpc._post = counting_post  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            rpc("eth_chainId"),
            rpc("eth_getBalance", sepolia.facilitator_addresses[0], "latest"),
            rpc("no_such_method"),
            rpc("eth_blockNumber"),
            return_exceptions=True,
        )
        assert posts == 1  # one HTTP request carried all four calls
        assert results[0] == hex(84532) and int(results[1], 16) == sepolia.facilitator_eth  # type: ignore[arg-type]
        assert isinstance(results[2], RPCError) and results[2].method == "no_such_method"
        assert int(results[3], 16) >= 1  # type: ignore[arg-type]
        assert await rpc("eth_chainId") == hex(84532) and posts == 2  # a lone call goes out on its own
    finally:
        await rpc.aclose()
