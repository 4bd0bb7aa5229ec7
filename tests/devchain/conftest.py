"""Dev-chain fixtures: one anvil per network per test session, a snapshot/revert around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._chain import start_dev_chain
from x402_middleware.devchain import DevChain

NETWORKS = ("local", "base", "base-sepolia")


@pytest.fixture(scope="session")
def dev_chains() -> Iterator[dict[str, DevChain]]:
    """Started lazily and stopped at session end; keyed by network."""
    chains: dict[str, DevChain] = {}
    try:
        yield chains
    finally:
        for chain in chains.values():
            chain.stop()


def _get(dev_chains: dict[str, DevChain], network: str) -> DevChain:
    if network not in dev_chains:
        dev_chains[network] = start_dev_chain(network, payers=3, facilitators=2)
    return dev_chains[network]


@pytest.fixture
def chain(dev_chains: dict[str, DevChain]) -> Iterator[DevChain]:
    """The local (31337) chain, reverted to its post-setup state after the test."""
    yield from _isolated(_get(dev_chains, "local"))


@pytest.fixture(params=NETWORKS)
def any_chain(request: pytest.FixtureRequest, dev_chains: dict[str, DevChain]) -> Iterator[DevChain]:
    """Each emulated network in turn (local, Base, Base Sepolia), reverted after the test."""
    yield from _isolated(_get(dev_chains, request.param))


def _isolated(chain: DevChain) -> Iterator[DevChain]:
    snapshot = chain.snapshot()
    try:
        yield chain
    finally:
        chain.revert(snapshot)
