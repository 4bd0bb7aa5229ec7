"""Our facilitator server as a real process: the official x402 SDK's middleware settles through it on chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client

from tests._chain import facilitator_process
from tests._facilitator_double import FakeFacilitator
from tests._payments import decode, pay_v1, pay_v2
from tests._servers import uvicorn_server
from x402_middleware import HTTPFacilitator, PaymentMiddleware
from x402_middleware.devchain import DevChain
from x402_middleware.facilitator import facilitator_app

PRICE = 1000  # "$0.001" in tests._interop_apps


@pytest.fixture(scope="module")
def server(sepolia: DevChain) -> Iterator[str]:
    with facilitator_process(sepolia, *sepolia.facilitator_keys[:2]) as url:
        yield url


def test_supported_and_bad_requests(server: str, sepolia: DevChain) -> None:
    with httpx.Client(base_url=server) as c:
        supported = c.get("/supported").json()
        assert {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"} in supported["kinds"]
        assert {"x402Version": 1, "scheme": "exact", "network": "base-sepolia"} in supported["kinds"]
        assert set(supported["signers"]["eip155:*"]) == set(sepolia.facilitator_addresses[:2])
        for body in (b"not json", b"[]", json.dumps({"paymentPayload": {"x402Version": 2}}).encode(), b"x" * 70_000):
            r = c.post("/verify", content=body)
            assert r.status_code == 400 and r.json()["error"] and r.json()["message"]
        r = c.post("/settle", json={"x402Version": 2, "paymentPayload": {}, "paymentRequirements": {}})
        assert r.status_code == 400


def test_unknown_network_is_a_refusal_not_an_error(server: str) -> None:
    challenge: dict[str, Any] = {
        "x402Version": 2,
        "resource": {"url": "http://x/"},
        "accepts": [
            {
                "scheme": "exact",
                "network": "eip155:999999",
                "amount": "1",
                "payTo": "0x" + "11" * 20,
                "asset": "0x" + "22" * 20,
                "maxTimeoutSeconds": 60,
                "extra": {"name": "T", "version": "1"},
            }
        ],
    }
    payload = decode(pay_v2(challenge))
    with httpx.Client(base_url=server) as c:
        r = c.post(
            "/verify",
            json={"x402Version": 2, "paymentPayload": payload, "paymentRequirements": challenge["accepts"][0]},
        )
    assert r.status_code == 200 and r.json()["isValid"] is False and r.json()["invalidReason"] == "invalid_network"


async def _app(scope: object, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"paid"})  # type: ignore[operator]


@pytest.mark.anyio
@pytest.mark.parametrize("version", [1, 2])
async def test_our_middleware_settles_through_our_server(server: str, sepolia: DevChain, version: int) -> None:
    chain = sepolia  # no snapshot/revert: the server process keeps its signers' nonces across tests
    facilitator = HTTPFacilitator(server)
    mw = PaymentMiddleware(
        _app, routes={"GET /p": "$0.001"}, pay_to=chain.pay_to, network="eip155:84532", facilitator=facilitator
    )
    payer = chain.payer_addresses[1]
    before = chain.balance_of(payer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as c:
        r = await c.get("/p")
        header = (
            {"PAYMENT-SIGNATURE": pay_v2(decode(r.headers["payment-required"]), key=chain.payer_keys[1])}
            if version == 2
            else {"X-PAYMENT": pay_v1(r.json(), key=chain.payer_keys[1])}
        )
        paid = await c.get("/p", headers=header)
        replay = await c.get("/p", headers=header)
    assert paid.status_code == 200 and paid.text == "paid"
    settle = decode(paid.headers["payment-response" if version == 2 else "x-payment-response"])
    assert settle["success"] is True and settle["network"] == ("eip155:84532" if version == 2 else "base-sepolia")
    assert int(chain.rpc("eth_getTransactionReceipt", settle["transaction"])["status"], 16) == 1
    assert chain.balance_of(payer) == before - PRICE and replay.status_code == 402
    await facilitator.aclose()


@pytest.mark.anyio
async def test_official_sdk_middleware_settles_through_our_server(server: str, sepolia: DevChain) -> None:
    chain = sepolia
    env = {"X402_FACILITATOR_URL": server, "X402_PAY_TO": chain.pay_to}
    payer_key, payer = chain.payer_keys[2], chain.payer_addresses[2]
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(payer_key)))
    with uvicorn_server("tests._interop_apps:official_remote", factory=True, env=env) as url:
        async with httpx.AsyncClient(transport=x402AsyncTransport(client), base_url=url) as http:
            r = await http.get("/weather")
    assert r.status_code == 200 and r.json() == {"temp": 21}
    settle = decode(r.headers["payment-response"])
    assert settle["success"] is True and settle["payer"] == payer
    assert int(chain.rpc("eth_getTransactionReceipt", settle["transaction"])["status"], 16) == 1
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - PRICE, before[1] + PRICE)


@pytest.mark.anyio
async def test_token_and_pay_to_allowlist_guard_the_gas_tap() -> None:
    allowed, other = "0x" + "11" * 20, "0x" + "33" * 20
    fake = FakeFacilitator()
    app = facilitator_app(fake, bearer_token="s3cret", pay_to=[allowed.upper().replace("0X", "0x")])

    def body(pay_to: str) -> dict[str, object]:
        challenge: dict[str, Any] = {
            "x402Version": 2,
            "resource": {"url": "http://x/"},
            "accepts": [
                {
                    "scheme": "exact",
                    "network": "eip155:84532",
                    "amount": "1000",
                    "payTo": pay_to,
                    "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                    "maxTimeoutSeconds": 60,
                    "extra": {"name": "USDC", "version": "2"},
                }
            ],
        }
        return {
            "x402Version": 2,
            "paymentPayload": decode(pay_v2(challenge)),
            "paymentRequirements": challenge["accepts"][0],
        }

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f") as c:
        assert (await c.get("/health")).status_code == 200  # liveness stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = await c.post("/settle", json=body(allowed), headers=headers)
            assert (
                r.status_code == 401
                and r.headers["www-authenticate"] == "Bearer"
                and r.json()["error"] == "unauthorized"
            )
        assert (await c.get("/supported")).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        refused = await c.post("/settle", json=body(other), headers=auth)
        assert refused.status_code == 200 and refused.json()["success"] is False
        assert refused.json()["errorReason"] == "pay_to_not_allowed"
        refused = await c.post("/verify", json=body(other), headers=auth)
        assert refused.json()["isValid"] is False and refused.json()["invalidReason"] == "pay_to_not_allowed"
        assert fake.settled == [] and fake.verified == []  # refused before the facilitator (and its gas) is used
        ok = await c.post("/settle", json=body(allowed), headers=auth)
        assert ok.status_code == 200 and ok.json()["success"] is True and len(fake.settled) == 1
