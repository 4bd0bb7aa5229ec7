"""``x402conf`` (x402-conformance 1.6.0) grades the Solana side: ``live`` (S0-S4, incl. S3 the published Solana ids and
S4 a valid ``extra.feePayer`` listed under ``signers``) on our facilitator server, ``resource`` (P1-P7, incl. P5's
Solana ``feePayer`` check) on our middleware offering Base and Solana."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests._servers import process_with_url, uvicorn_server
from tests.test_conformance import by_id, x402conf
from x402_middleware.devchain.solana import SolanaDevChain


@pytest.fixture(scope="module")
def facilitator(sol: SolanaDevChain) -> Iterator[str]:
    command = [
        sys.executable, "-m", "x402_middleware.facilitator", "--port", "0", "--network", "solana",
        "--rpc-url", sol.rpc_url, "--key", sol.fee_payer_secret_keys[0],
    ]  # fmt: skip
    with process_with_url(command) as url:
        yield url


@pytest.fixture(scope="module")
def ours(sol: SolanaDevChain) -> Iterator[str]:
    env = {
        "X402_SOLANA_RPC_URL": sol.rpc_url,
        "X402_SOLANA_PAY_TO": sol.pay_to,
        "X402_SOLANA_FEE_PAYER_KEY": sol.fee_payer_secret_keys[0],
    }
    with uvicorn_server("tests.svm._apps:ours", factory=True, env=env) as url:
        yield url


def test_the_solana_facilitator_passes_s0_to_s4(facilitator: str) -> None:
    code, doc = x402conf("live", "--fail-on-error", facilitator)
    (run,) = doc["results"]
    checks = by_id(run)
    assert (code, run["http"], run["kinds_total"]) == (0, 200, 2)
    assert {cid: (c["pass"], c["severity"]) for cid, c in checks.items()} == {
        "S1": (True, "error"),
        "S2": (True, "error"),
        "S3": (True, "error"),
        "S4": (True, "warning"),  # graded as a warning by x402conf; passing here
    }


def test_the_solana_402_passes_p1_to_p7(ours: str) -> None:
    code, doc = x402conf("resource", "--fail-on-error", f"{ours}/weather")
    (run,) = doc["results"]
    checks = by_id(run)
    assert code == 0 and run["http"] == 402
    assert all(c["pass"] for c in checks.values()), checks
    assert set(checks) == {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}
