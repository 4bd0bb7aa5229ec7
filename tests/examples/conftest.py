"""Shared fixtures of the example tests: Django configured once, and one Base Sepolia dev chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._django import setup_django
from x402_middleware.devchain import DevChain

setup_django()


@pytest.fixture(scope="session")
def example_chain() -> Iterator[DevChain]:
    """anvil emulating Base Sepolia: the token sits at the canonical USDC address with the "USDC" EIP-712 name."""
    with DevChain("base-sepolia", payers=4, facilitators=2) as chain:
        yield chain
