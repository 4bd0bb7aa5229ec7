"""Interop of ``upto`` with the official clients, unmodified, on a real anvil dev chain over real servers.

The official Python SDK (``x402==2.25.0``, ``UptoEvmClientScheme`` + ``EthAccountSigner``) and the TypeScript one
(``@x402/fetch`` + ``@x402/evm@2.27.0``'s ``UptoEvmScheme``, tests/gateway/js/x402_upto_fetch.mjs) pay OUR
middleware, whose app reports the actual charge; the payer loses exactly the settled amount (read on chain).
The gateway in usage mode: tests/gateway/test_usage_interop.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme

from tests._interop_apps import UPTO_CHARGE, UPTO_STREAM_CHARGE
from tests._servers import ROOT, uvicorn_server
from x402_middleware.devchain import DevChain

pytestmark = pytest.mark.anyio
JS_CLIENT = ROOT / "tests" / "gateway" / "js" / "x402_upto_fetch.mjs"


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    with DevChain("base-sepolia", payers=2, facilitators=1) as dev:
        yield dev


@pytest.fixture(scope="module")
def server(chain: DevChain) -> Iterator[str]:
    env = {
        "X402_RPC_URL": chain.rpc_url,
        "X402_FACILITATOR_KEY": chain.facilitator_keys[0],
        "X402_PAY_TO": chain.pay_to,
    }
    with uvicorn_server("tests._interop_apps:ours_upto", factory=True, env=env) as url:
        yield url


def settled_balance(chain: DevChain, address: str, expected: int) -> int:
    """The balance once a stream's settlement (made after its last byte went out) is mined, or after 10 s."""
    deadline = time.monotonic() + 10
    while (balance := chain.balance_of(address)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return balance


def official_upto_client(key: str) -> x402Client:
    """The official client with the upto EVM scheme, default policies and spend controls."""
    return x402Client().register("eip155:*", UptoEvmClientScheme(EthAccountSigner(Account.from_key(key))))


async def test_the_official_python_upto_client_pays_the_actual_charge(chain: DevChain, server: str) -> None:
    key, payer = chain.payer_keys[0], chain.payer_addresses[0]
    client = official_upto_client(key)
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    async with httpx.AsyncClient(transport=x402AsyncTransport(client), base_url=server, timeout=30) as http:
        r = await http.get("/usage")
        stream = await http.get("/stream")
    assert r.status_code == 200 and r.json() == {"paid_by": payer, "charged": UPTO_CHARGE}
    settled = x402HTTPClient(client).get_payment_settle_response(lambda name: r.headers.get(name))
    assert settled.success and settled.payer == payer and settled.amount == str(UPTO_CHARGE)
    assert stream.status_code == 200 and stream.text.endswith("data: [DONE]\n\n")
    spent = UPTO_CHARGE + UPTO_STREAM_CHARGE  # far below the $0.01 maximum signed for each
    assert settled_balance(chain, payer, before[0] - spent) == before[0] - spent
    assert chain.balance_of(chain.pay_to) == before[1] + spent


def run_js_upto_client(tmp_path: Path, key: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the TypeScript upto client (node) over ``calls`` and return what it saw."""
    node = shutil.which("node")
    assert node, "node is needed (it also runs anvil's npm package)"
    assert (ROOT / "node_modules" / "@x402" / "evm").is_dir(), "run `npm ci`: @x402/evm is a devDependency"
    config, out = tmp_path / "config.json", tmp_path / "out.json"
    config.write_text(json.dumps({"key": key, "calls": calls}))
    done = subprocess.run(
        [node, str(JS_CLIENT), str(config), str(out)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_the_typescript_upto_client_pays_the_actual_charge(chain: DevChain, server: str, tmp_path: Path) -> None:
    key, payer = chain.payer_keys[1], chain.payer_addresses[1]
    before = chain.balance_of(payer)
    seen = run_js_upto_client(tmp_path, key, [{"url": server + "/usage"}, {"url": server + "/stream"}])
    assert seen["version"] == "2.27.0" and seen["address"] == payer
    whole, stream = seen["calls"]
    assert whole["status"] == 200 and whole["json"] == {"paid_by": payer, "charged": UPTO_CHARGE}, whole
    assert [e["status"] for e in whole["exchanges"]] == [402, 200]
    assert whole["exchanges"][1]["payment"]["accepted"]["scheme"] == "upto"
    assert whole["exchanges"][1]["settlement"]["amount"] == str(UPTO_CHARGE)
    assert stream["status"] == 200 and stream["text"].endswith("data: [DONE]\n\n")
    spent = UPTO_CHARGE + UPTO_STREAM_CHARGE
    assert settled_balance(chain, payer, before - spent) == before - spent
