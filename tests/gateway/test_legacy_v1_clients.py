"""The legacy v1 clients, unmodified, pay ``make dev``'s gateway from its v1 402 body (issue 9).

- npm ``x402-fetch`` 1.2.0 (pinned in package.json; ``tests/gateway/js/x402_fetch_legacy.mjs``), the tutorial
  client: ``wrapFetchWithPayment(fetch, account)``. It runs zod's ``PaymentRequirementsSchema.parse`` on every
  ``accepts[]`` entry, where ``outputSchema`` may be absent or an object but not ``null``.
- PyPI ``x402`` 1.0.0 (``from x402.clients.requests import x402_requests``), in its own throwaway venv (the test venv
  holds x402 2.x), built once per session.

Each pays chat completions at the gateway's quote; the settlements are read back from the dev chain and the balances
must move by exactly the prices: the payer down, ``pay_to`` up.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._dev_gateway import DevGateway, clean_env, dev_gateway
from tests._servers import ROOT

SCRIPT = ROOT / "tests" / "gateway" / "js" / "x402_fetch_legacy.mjs"
MODEL = "openai/gpt-5.2"
LEGACY_PY = ("x402==1.0.0", "requests", "eth-account")


def _call(content: str, max_tokens: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}


# Different max_tokens give different quotes, so each settled amount pins down the call it paid for.
JS_CALLS = {"account": _call("From x402-fetch with an account", 1300), "wallet": _call("From a wallet client", 2100)}
PY_CALLS = {"first": _call("From x402 1.0.0", 1700), "second": _call("Again from x402 1.0.0", 2300)}

# Runs in the legacy venv: pays each call of CONFIG with a fresh x402_requests session, writes what it saw to OUT.
LEGACY_PY_SCRIPT = """
import base64, json, sys
from importlib.metadata import version
from eth_account import Account
from x402.clients.requests import x402_requests

config = json.load(open(sys.argv[1]))
account = Account.from_key(config["key"])
out = {"version": version("x402"), "address": account.address}
for name, body in config["calls"].items():
    try:
        r = x402_requests(account).post(config["url"], json=body, timeout=30)
    except Exception as exc:
        out[name] = {"error": {"name": type(exc).__name__, "message": str(exc)}}
        continue
    sent = r.request.headers.get("X-Payment")
    settlement = r.headers.get("X-Payment-Response")
    out[name] = {
        "status": r.status_code,
        "json": r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text,
        "payment": json.loads(base64.b64decode(sent)) if sent else None,
        "settlement": json.loads(base64.b64decode(settlement)) if settlement else None,
    }
json.dump(out, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway("--payers", "2") as gw:
        yield gw


def _url(dev: DevGateway) -> str:
    return str(dev.info["api_url"]) + "/v1/chat/completions"


def _quote(dev: DevGateway, body: dict[str, Any]) -> int:
    """What the gateway asks for this body: the v1 ``maxAmountRequired`` of its 402 to an unpaid request."""
    r = httpx.post(_url(dev), json=body, timeout=10)
    assert r.status_code == 402, r.text
    [accept] = r.json()["accepts"]  # Base only: x402 1.0.0 rejects a v1 body naming "solana" (the v2 header has it)
    assert None not in accept.values(), accept  # zod: optional fields are absent or objects, never null
    v2 = json.loads(base64.b64decode(r.headers["payment-required"]))["accepts"][0]["amount"]
    assert accept["maxAmountRequired"] == v2
    return int(v2)


def _run(dev: DevGateway, payer: int, cmd: list[str], calls: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run a client script (``cmd CONFIG OUT``) with payer number ``payer``; add the balance moves to its output."""
    key, address, pay_to = dev.info["payer_private_keys"][payer], dev.info["payer_addresses"][payer], dev.info["pay_to"]
    (work / "config.json").write_text(
        json.dumps({"url": _url(dev), "key": key, "rpc_url": dev.info["rpc_url"], "calls": calls})
    )
    before = dev.balance_of(address), dev.balance_of(pay_to)
    proc = subprocess.run(
        [*cmd, str(work / "config.json"), str(work / "out.json")],
        cwd=work,
        env=clean_env(HOME=str(work)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # its exit code is asserted below, with its stderr
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads((work / "out.json").read_text())
    assert out["address"] == address
    out["spent"], out["received"] = before[0] - dev.balance_of(address), dev.balance_of(pay_to) - before[1]
    return out


def _check_settlement(dev: DevGateway, settlement: dict[str, Any], payer: str) -> str:
    assert settlement["success"] is True and settlement["network"] == "base", settlement
    assert settlement["payer"].lower() == payer.lower()
    assert dev.receipt_status(settlement["transaction"]) == 1
    return str(settlement["transaction"])


def _check_v1_payment(payment: dict[str, Any], dev: DevGateway, price: int) -> None:
    assert (payment["x402Version"], payment["scheme"], payment["network"]) == (1, "exact", "base")
    auth = payment["payload"]["authorization"]
    assert int(auth["value"]) == price and auth["to"].lower() == dev.info["pay_to"].lower()


def test_x402_fetch_pays_from_the_v1_body(dev: DevGateway, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed (it also runs anvil's npm package)"
    assert (ROOT / "node_modules" / "x402-fetch").is_dir(), "run `npm ci`: x402-fetch is a devDependency"
    prices = {name: _quote(dev, body) for name, body in JS_CALLS.items()}
    assert len(set(prices.values())) == len(prices)
    out = _run(dev, 0, [node, str(SCRIPT)], JS_CALLS, tmp_path)
    assert out["version"] == "1.2.0"
    txs = set()
    for name, body in JS_CALLS.items():
        result = out[name]
        assert "error" not in result, result  # a ZodError here: the v1 body does not parse
        assert result["status"] == 200, result
        assert result["json"]["choices"][0]["message"]["content"] == f"Echo (gpt-5.2): {body['messages'][0]['content']}"
        probe, paid = result["exchanges"]
        assert (probe["paid"], probe["status"], paid["paid"], paid["status"]) == (False, 402, True, 200)
        assert probe["body"]["x402Version"] == 1
        _check_v1_payment(paid["payment"], dev, prices[name])
        txs.add(_check_settlement(dev, paid["settlement"], out["address"]))
    assert len(txs) == len(JS_CALLS)
    assert out["spent"] == out["received"] == sum(prices.values())


@pytest.fixture(scope="session")
def legacy_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway venv with PyPI ``x402`` 1.0.0: its python."""
    venv = tmp_path_factory.mktemp("x402-legacy-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=60)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *LEGACY_PY],
        env={**os.environ, "PIP_NO_INPUT": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert pip.returncode == 0, f"pip install {' '.join(LEGACY_PY)} failed:\n{pip.stderr[-3000:]}"
    return python


def test_legacy_python_x402_pays_from_the_v1_body(dev: DevGateway, legacy_python: Path, tmp_path: Path) -> None:
    prices = {name: _quote(dev, body) for name, body in PY_CALLS.items()}
    assert len(set(prices.values())) == len(prices)
    (tmp_path / "pay.py").write_text(LEGACY_PY_SCRIPT)
    out = _run(dev, 1, [str(legacy_python), str(tmp_path / "pay.py")], PY_CALLS, tmp_path)
    assert out["version"] == "1.0.0"
    txs = set()
    for name, body in PY_CALLS.items():
        result = out[name]
        assert "error" not in result, result
        assert result["status"] == 200, result
        assert result["json"]["choices"][0]["message"]["content"] == f"Echo (gpt-5.2): {body['messages'][0]['content']}"
        _check_v1_payment(result["payment"], dev, prices[name])
        txs.add(_check_settlement(dev, result["settlement"], out["address"]))
    assert len(txs) == len(PY_CALLS)
    assert out["spent"] == out["received"] == sum(prices.values())
