"""The TypeScript client ``@x402/svm@2.27.0`` with ``@x402/fetch`` pays OUR middleware on the Solana dev chain."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._servers import uvicorn_server
from tests.svm._apps import NETWORK
from x402_middleware.devchain.solana import SolanaDevChain

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "svm" / "js" / "x402_svm_fetch.mjs"
PRICE = 1000


def run_ts_client(tmp_path: Path, secret: str, rpc_url: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed (it also runs anvil's npm package)"
    assert (ROOT / "node_modules" / "@x402" / "svm").is_dir(), "run `npm ci`: @x402/svm is a devDependency"
    config, out = tmp_path / "config.json", tmp_path / "out.json"
    config.write_text(json.dumps({"secret": secret, "rpc_url": rpc_url, "calls": calls}))
    done = subprocess.run(
        [node, str(SCRIPT), str(config), str(out)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.fixture(scope="module")
def ours(sol: SolanaDevChain) -> Iterator[str]:
    env = {
        "X402_SOLANA_RPC_URL": sol.rpc_url,
        "X402_SOLANA_PAY_TO": sol.pay_to,
        "X402_SOLANA_FEE_PAYER_KEY": sol.fee_payer_secret_keys[0],
    }
    with uvicorn_server("tests.svm._apps:ours", factory=True, env=env) as url:
        yield url


def test_the_ts_client_pays_our_middleware(sol: SolanaDevChain, ours: str, tmp_path: Path) -> None:
    payer, fee_payer = sol.payer_addresses[0], sol.fee_payer_addresses[0]
    before = sol.token_balance(payer), sol.token_balance(sol.pay_to), sol.lamports(fee_payer)
    calls_before = dict(sol.rpc.calls)
    out = run_ts_client(tmp_path, sol.payer_secret_keys[0], sol.rpc_url, [{"url": ours + "/weather"}] * 2)
    assert out["version"] == "2.27.0" and out["address"] == payer
    for call in out["calls"]:
        assert call.get("status") == 200, call
        assert call["json"] == {"temp": 21, "paid_by": payer, "amount": PRICE}
        unpaid, paid = call["exchanges"]
        assert (unpaid["paid"], unpaid["status"], paid["paid"], paid["status"]) == (False, 402, True, 200)
        assert paid["payment"]["accepted"]["network"] == NETWORK
        assert paid["payment"]["accepted"]["extra"]["feePayer"] == fee_payer
        settlement = paid["settlement"]
        assert settlement["success"] is True and settlement["payer"] == payer and settlement["network"] == NETWORK
        assert sol.rpc.statuses[settlement["transaction"]][1] is None
    txs = {c["exchanges"][1]["settlement"]["transaction"] for c in out["calls"]}
    assert len(txs) == 2  # two payments, two transactions (the client's random memo makes them distinct)
    after = sol.token_balance(payer), sol.token_balance(sol.pay_to), sol.lamports(fee_payer)
    assert (before[0] - after[0], after[1] - before[1], before[2] - after[2]) == (2 * PRICE, 2 * PRICE, 2 * 10_000)
    used = {m for m, n in sol.rpc.calls.items() if n > calls_before.get(m, 0)}
    # @solana/kit asked for the mint and a blockhash; our facilitator (a fresh server process) checked the cluster
    # once, simulated, sent and confirmed: all methods the dev chain serves.
    assert used == {"getAccountInfo", "getLatestBlockhash", "getGenesisHash", "simulateTransaction",
                    "sendTransaction", "getSignatureStatuses"}  # fmt: skip
