"""A local EVM for development and tests: anvil, a USDC look-alike at the canonical address, funded wallets.

anvil comes from npm (``npm ci`` at the repo root); the token is ``contracts/TestUSDC.sol``, compiled into
``artifacts/contracts.json``. From the shell, ``python -m x402_middleware.devchain --network base-sepolia``
prints one JSON line with the RPC URL, the asset and the keys, and runs until interrupted.

Example::

    from x402_middleware.devchain import DevChain

    with DevChain("base", payers=1) as chain:
        chain.balance_of(chain.payer_addresses[0])   # 1_000_000_000 (1,000 USDC)
"""

from __future__ import annotations

from ..evm.abi import decode_output, encode_call, selector
from ..evm.jsonrpc import RPCError
from ._anvil import AnvilNotFoundError, AnvilStartError, find_anvil
from ._rpc import TransactionFailed
from .chain import (
    ANVIL_DEPLOYER_KEY,
    BASE_SEPOLIA_USDC,
    BASE_USDC,
    MULTICALL3_ADDRESS,
    TARGETS,
    ChainTarget,
    DevChain,
    derived_key,
)

__all__ = [
    "ANVIL_DEPLOYER_KEY",
    "BASE_SEPOLIA_USDC",
    "BASE_USDC",
    "MULTICALL3_ADDRESS",
    "TARGETS",
    "AnvilNotFoundError",
    "AnvilStartError",
    "ChainTarget",
    "DevChain",
    "RPCError",
    "TransactionFailed",
    "decode_output",
    "derived_key",
    "encode_call",
    "find_anvil",
    "selector",
]
