"""One LiteSVM Solana dev chain (mainnet's USDC mint) per module: it starts in milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from x402_middleware.devchain.solana import SolanaDevChain


@pytest.fixture(scope="module")
def sol() -> Iterator[SolanaDevChain]:
    with SolanaDevChain("solana", payers=3, fee_payers=2) as chain:
        yield chain
