"""``make dev`` end to end: the dev gateway as a real process (anvil + on-chain facilitator + emulator + paid gateway).

Every paid call here settles on the dev chain; balances are read back from anvil.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from eth_account import Account

from tests._dev_gateway import DevGateway, dev_gateway, stop, wait_gone
from x402_middleware import X402Auth
from x402_middleware.client import settlement_of

CHAT = {
    "model": "openai/gpt-5.2",
    "messages": [{"role": "user", "content": "Hello from the dev gateway"}],
    "max_tokens": 64,
}


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway() as gw:
        yield gw


def _payer(dev: DevGateway, i: int) -> tuple[str, str]:
    key = dev.info["payer_private_keys"][i]
    return key, Account.from_key(key).address


def test_json_line_describes_a_base_chain(dev: DevGateway) -> None:
    info = dev.info
    assert info["network"] == "eip155:8453" and info["chain_id"] == 8453
    assert info["asset"] == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"  # Base's canonical USDC address
    assert info["api_url"] == info["url"] + "/api" and info["upstream"] == "emulator"
    assert dev.balance_of(info["payer_addresses"][-1]) == 1_000 * 10**6  # the last payer is never used by these tests
    with httpx.Client(base_url=dev.url) as c:
        assert c.get("/api/health").json()["status"] == "ok"
        models = c.get("/api/v1/models").json()["data"]
    assert len(models) == info["models"] > 10


def test_unpaid_call_gets_a_402_for_the_quoted_price(dev: DevGateway) -> None:
    with httpx.Client(base_url=dev.url) as c:
        r = c.post("/api/v1/chat/completions", json=CHAT)
    assert r.status_code == 402
    required = json.loads(base64.b64decode(r.headers["payment-required"]))
    accept = required["accepts"][0]
    assert accept["network"] == "eip155:8453" and accept["asset"] == dev.info["asset"]
    assert accept["payTo"] == dev.info["pay_to"] and int(accept["amount"]) >= 1000
    assert required["resource"]["url"] == dev.url + "/api/v1/chat/completions"  # built from the request's own host


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/messages"])
def test_paid_call_settles_the_exact_price_on_chain(dev: DevGateway, path: str) -> None:
    key, payer = _payer(dev, 0)
    before = dev.balance_of(payer), dev.balance_of(dev.info["pay_to"])
    body = CHAT if "chat" in path else {**CHAT, "model": "anthropic/claude-sonnet-4.6"}
    with httpx.Client(base_url=dev.url, auth=X402Auth(key, max_amount_per_payment="$0.10"), timeout=30) as c:
        r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.payer == payer and settled.network == "eip155:8453"
    assert dev.receipt_status(settled.transaction) == 1
    price = settled.amount
    assert price is not None and price > 0
    assert (dev.balance_of(payer), dev.balance_of(dev.info["pay_to"])) == (before[0] - price, before[1] + price)
    text = r.json()["choices"][0]["message"]["content"] if "chat" in path else r.json()["content"][0]["text"]
    assert "Hello from the dev gateway" in text


def test_paid_stream_is_sse_and_settled_before_the_first_byte(dev: DevGateway) -> None:
    key, payer = _payer(dev, 1)
    before = dev.balance_of(payer)
    with (
        httpx.Client(base_url=dev.url, auth=X402Auth(key), timeout=30) as c,
        c.stream("POST", "/api/v1/chat/completions", json={**CHAT, "stream": True}) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        settled = settlement_of(r)  # in the response head: settled before any SSE byte was sent
        lines = [line for line in r.iter_lines() if line]
    assert settled is not None and settled.success and dev.receipt_status(settled.transaction) == 1
    assert settled.amount is not None
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert dev.balance_of(payer) == before - settled.amount


def test_failed_upstream_is_not_charged_and_the_same_payment_can_retry(dev: DevGateway) -> None:
    key, payer = _payer(dev, 1)
    before = dev.balance_of(payer)
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        challenge = c.post("/v1/chat/completions", json=CHAT)
        auth = X402Auth(key)
        signed = auth._pay(challenge.request, challenge)  # sign once, send the same signature twice (as SDKs do)
        assert signed is not None
        c.post(dev.info["emulator_url"] + "/_control", json={"fault": "500", "model": "gpt-5.2"}).raise_for_status()
        try:
            failed = c.post("/v1/chat/completions", json=CHAT, headers={signed[0]: signed[1]})
        finally:
            c.delete(dev.info["emulator_url"] + "/_control")
        assert failed.status_code >= 500 and "payment-response" not in failed.headers
        assert failed.json()["code"] == failed.json()["error"]["code"]  # OpenAI envelope, code mirrored at the top
        assert dev.balance_of(payer) == before  # nothing settled for a failed call
        retried = c.post("/v1/chat/completions", json=CHAT, headers={signed[0]: signed[1]})
        assert retried.status_code == 200
        replayed = c.post("/v1/chat/completions", json=CHAT, headers={signed[0]: signed[1]})
        assert replayed.status_code == 402  # settled once, never twice
    settled = settlement_of(retried)
    assert settled is not None and settled.amount is not None and dev.balance_of(payer) == before - settled.amount


def test_free_model_never_asks_for_payment(dev: DevGateway) -> None:
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "model": "nvidia/nemotron-3.5-lightning"})
    assert r.status_code == 200 and "payment-response" not in r.headers


def test_sigterm_stops_gateway_chain_and_emulator() -> None:
    with dev_gateway() as gw:
        anvil_pid = gw.info["chain_pid"]
        with httpx.Client() as c:
            assert (
                c.post(gw.info["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).json()["result"]
                == "0x2105"
            )
        assert stop(gw.proc) == 0
        assert wait_gone(anvil_pid), "anvil outlived the dev gateway"
        with pytest.raises(httpx.ConnectError):
            httpx.get(gw.url + "/api/health", timeout=2)
        assert any("stopped" in line for line in gw.output)
