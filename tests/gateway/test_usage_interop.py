"""The official clients, unmodified, pay the dev gateway in usage mode with ``upto``: charged the tokens used.

``python -m examples.gateway.dev --billing usage`` runs as a real process on its dev chain; the official Python SDK
(``x402==2.25.0``) and the TypeScript ``@x402/evm@2.27.0`` upto clients each make chat calls, and each payer's
on-chain balance drops by exactly the sum of the calls' usage costs, each below its quote.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402AsyncTransport

from examples.gateway.catalog import load_catalog
from examples.gateway.quote import usage_price
from tests._dev_gateway import DevGateway, dev_gateway
from tests.test_interop_upto import official_upto_client, run_js_upto_client

pytestmark = pytest.mark.anyio
CATALOG = load_catalog()
MODEL = "openai/gpt-5.5"  # its quote for 1000 max tokens is above the $0.001 floor: usage costs less
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "what does usage billing cost"}], "max_tokens": 1000}


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway("--billing", "usage", "--no-solana", "--payers", "2") as gw:
        yield gw


def _cost(usage: dict[str, int]) -> int:
    cost = usage_price(CATALOG.models[MODEL], usage["prompt_tokens"], usage["completion_tokens"])
    assert cost is not None
    return cost


async def test_the_official_python_upto_client_pays_the_usage(dev: DevGateway) -> None:
    key = dev.info["payer_private_keys"][0]
    payer = Account.from_key(key).address
    before = dev.balance_of(payer)
    client = official_upto_client(key)
    async with httpx.AsyncClient(transport=x402AsyncTransport(client), base_url=dev.url, timeout=30) as http:
        r = await http.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 200, r.text
    settled = x402HTTPClient(client).get_payment_settle_response(lambda name: r.headers.get(name))
    cost = _cost(r.json()["usage"])
    assert settled.success and settled.payer == payer and settled.amount == str(cost)
    assert dev.balance_of(payer) == before - cost


def test_the_typescript_upto_client_pays_the_usage(dev: DevGateway, tmp_path: Path) -> None:
    key = dev.info["payer_private_keys"][1]
    payer = Account.from_key(key).address
    before = dev.balance_of(payer)
    call = {"url": dev.url + "/v1/chat/completions", "method": "POST", "body": BODY}
    seen = run_js_upto_client(tmp_path, key, [call, call])
    costs = []
    for result in seen["calls"]:
        assert result["status"] == 200, result
        challenge, paid = result["exchanges"]
        maximum = int(challenge["required"]["accepts"][1]["amount"])
        assert paid["payment"]["accepted"]["scheme"] == "upto"
        cost = _cost(result["json"]["usage"])
        assert paid["settlement"]["amount"] == str(cost) and cost < maximum
        costs.append(cost)
    assert dev.balance_of(payer) == before - sum(costs)
