"""One Base Sepolia dev chain per session (token at the canonical USDC address), reverted after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._chain import start_dev_chain
from x402_middleware.devchain import DevChain


@pytest.fixture(scope="session")
def sepolia() -> Iterator[DevChain]:
    chain = start_dev_chain("base-sepolia", payers=3, facilitators=4)
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def chain(sepolia: DevChain) -> Iterator[DevChain]:
    snapshot = sepolia.snapshot()
    try:
        yield sepolia
    finally:
        sepolia.revert(snapshot)
