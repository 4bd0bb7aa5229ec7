"""Shared fixtures of the example tests: Django configured once, one Base Sepolia dev chain, and our facilitator
server process settling on it (facilitator key 1; in-process ``OnChainFacilitator``s use key 0)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests._django import setup_django
from tests._servers import process_with_url
from x402_middleware.devchain import DevChain

setup_django()


@pytest.fixture(scope="session")
def example_chain() -> Iterator[DevChain]:
    """anvil emulating Base Sepolia: the token sits at the canonical USDC address with the "USDC" EIP-712 name."""
    with DevChain("base-sepolia", payers=4, facilitators=2) as chain:
        yield chain


@pytest.fixture(scope="session")
def facilitator_url(example_chain: DevChain) -> Iterator[str]:
    """``python -m x402_middleware.facilitator`` on the example chain, for SyncHTTPFacilitator / HTTPFacilitator."""
    args = [
        sys.executable,
        "-m",
        "x402_middleware.facilitator",
        "--rpc-url",
        example_chain.rpc_url,
        "--port",
        "0",
        "--network",
        example_chain.network,
        "--key",
        example_chain.facilitator_keys[1],
    ]
    with process_with_url(args) as url:
        yield url
