"""``make dev`` with both chains: the dev gateway's 402 offers Base and Solana, and unmodified Solana clients pay it.

The dev gateway runs as a real process (anvil, LiteSVM behind JSON-RPC, both facilitators, the emulator upstream);
Solana balances are read back over the dev chain's JSON-RPC.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.svm import KeypairSigner
from x402.mechanisms.svm.exact import register_exact_svm_client

from tests._dev_gateway import DevGateway, dev_gateway
from tests.svm.test_svm_interop_js import run_ts_client
from x402_middleware import X402Auth, settlement_of
from x402_middleware.svm import associated_token_address

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:Client is deprecated:FutureWarning")]
SOLANA = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
CHAT = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "Hello over Solana"}], "max_tokens": 64}


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway() as gw:
        yield gw


def _rpc(dev: DevGateway, method: str, *params: Any) -> Any:
    answer = httpx.post(
        dev.info["solana_rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    )
    return answer.json()["result"]


def usdc(dev: DevGateway, owner: str) -> int:
    ata = str(associated_token_address(owner, dev.info["mint"]))
    return int(_rpc(dev, "getTokenAccountBalance", ata)["value"]["amount"])


def lamports(dev: DevGateway, address: str) -> int:
    return int(_rpc(dev, "getBalance", address)["value"])


def _snapshot(dev: DevGateway, payer: int) -> tuple[int, int, int]:
    info = dev.info
    return (
        usdc(dev, info["solana_payer_addresses"][payer]),
        usdc(dev, info["solana_pay_to"]),
        lamports(dev, info["solana_fee_payers"][0]),
    )


def _assert_paid_once(dev: DevGateway, before: tuple[int, int, int], payer: int, amount: int) -> None:
    after = _snapshot(dev, payer)
    assert (before[0] - after[0], after[1] - before[1], before[2] - after[2]) == (amount, amount, 10_000)


def test_the_json_line_and_the_402_offer_base_and_solana(dev: DevGateway) -> None:
    info = dev.info
    assert info["solana_network"] == SOLANA and info["mint"] == "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    assert len(info["solana_payer_secret_keys"]) == len(info["solana_payer_addresses"]) == 3
    r = httpx.post(dev.url + "/api/v1/chat/completions", json=CHAT)
    assert r.status_code == 402
    accepts = json.loads(base64.b64decode(r.headers["payment-required"]))["accepts"]
    assert [a["network"] for a in accepts] == ["eip155:8453", SOLANA]
    assert accepts[1]["payTo"] == info["solana_pay_to"] and accepts[1]["asset"] == info["mint"]
    assert accepts[1]["extra"]["feePayer"] in info["solana_fee_payers"]
    assert accepts[0]["amount"] == accepts[1]["amount"]  # one price, whichever chain pays it


def test_x402auth_pays_the_gateway_on_solana(dev: DevGateway) -> None:
    info = dev.info
    before = _snapshot(dev, 0)
    auth = X402Auth(solana_key=info["solana_payer_secret_keys"][0], solana_rpc_url=info["solana_rpc_url"])
    with httpx.Client(base_url=dev.url, auth=auth, timeout=30) as http:
        r = http.post("/api/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.network == SOLANA
    assert settled.payer == info["solana_payer_addresses"][0]
    status = _rpc(dev, "getSignatureStatuses", [settled.transaction])["value"][0]
    assert status["err"] is None
    _assert_paid_once(dev, before, 0, auth.spent)


async def test_the_official_python_client_pays_the_gateway_on_solana(dev: DevGateway) -> None:
    info = dev.info
    before = _snapshot(dev, 1)
    client = x402Client()
    register_exact_svm_client(
        client, KeypairSigner.from_base58(info["solana_payer_secret_keys"][1]), rpc_url=info["solana_rpc_url"]
    )
    async with httpx.AsyncClient(transport=x402AsyncTransport(client), base_url=dev.url, timeout=30) as http:
        unpaid = await http.post("/api/v1/chat/completions", json=CHAT)
    assert unpaid.status_code == 200, unpaid.text  # the transport paid on the 402 and retried
    amount = before[0] - usdc(dev, info["solana_payer_addresses"][1])
    assert amount > 0
    _assert_paid_once(dev, before, 1, amount)


def test_the_ts_client_pays_the_gateway_on_solana(dev: DevGateway, tmp_path: Path) -> None:
    info = dev.info
    before = _snapshot(dev, 2)
    calls = [{"url": dev.url + "/api/v1/chat/completions", "method": "POST", "body": CHAT}]
    out = run_ts_client(tmp_path, info["solana_payer_secret_keys"][2], info["solana_rpc_url"], calls)
    (call,) = out["calls"]
    assert call.get("status") == 200, call
    paid = call["exchanges"][1]
    assert paid["payment"]["accepted"]["network"] == SOLANA and paid["settlement"]["success"] is True
    _assert_paid_once(dev, before, 2, int(paid["payment"]["accepted"]["amount"]))
