"""OnChainFacilitator against a real anvil chain: money moves exactly once, refusals carry the right reason."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest

from tests._payments import decode, encode, pay_v2
from x402_middleware import Asset, Network, PaymentMiddleware
from x402_middleware.devchain import DevChain
from x402_middleware.facilitator.onchain import OnChainFacilitator
from x402_middleware.models import parse_payment_payload
from x402_middleware.networks import get_network, register_network

pytestmark = pytest.mark.anyio
PRICE = 1500


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"PAID CONTENT"})


def setup(
    chain: DevChain, *, keys: int = 1, network: Network | None = None
) -> tuple[PaymentMiddleware, OnChainFacilitator]:
    net = network or get_network(chain.network)
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:keys], network=net)
    mw = PaymentMiddleware(
        app, routes={"GET /paid": "$0.0015"}, pay_to=chain.pay_to, network=net.caip2, facilitator=facilitator
    )
    return mw, facilitator


def client(mw: PaymentMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://test")


async def challenge(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/paid")
    assert r.status_code == 402
    return decode(r.headers["payment-required"])  # type: ignore[no-any-return]


async def test_paid_request_moves_exactly_the_price_and_returns_the_tx_hash(chain: DevChain) -> None:
    mw, fac = setup(chain)
    payer, key = chain.payer_addresses[0], chain.payer_keys[0]
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    async with client(mw) as c:
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(await challenge(c), key=key)})
    assert r.status_code == 200 and r.text == "PAID CONTENT"
    settle = decode(r.headers["payment-response"])
    assert settle["success"] is True and settle["payer"] == payer and settle["network"] == "eip155:84532"
    receipt = chain.rpc("eth_getTransactionReceipt", settle["transaction"])
    assert int(receipt["status"], 16) == 1 and receipt["to"].lower() == chain.asset.lower()
    assert chain.balance_of(payer) == before[0] - PRICE and chain.balance_of(chain.pay_to) == before[1] + PRICE
    await fac.aclose()


async def test_replay_is_refused_even_by_a_fresh_server_and_nothing_is_served(chain: DevChain) -> None:
    mw, fac = setup(chain)
    key = chain.payer_keys[0]
    async with client(mw) as c:
        sig = pay_v2(await challenge(c), key=key)
        assert (await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})).status_code == 200
    balance = chain.balance_of(chain.payer_addresses[0])
    fresh, fac2 = setup(chain)  # a new process with an empty store: the chain itself refuses the nonce
    async with client(fresh) as c:
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and b"PAID CONTENT" not in r.content
    assert r.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert chain.balance_of(chain.payer_addresses[0]) == balance
    result = await fac2.verify(parse_payment_payload(decode(sig)), fresh.gate.routes[0].fixed[0])  # type: ignore[index]
    assert (result.is_valid, result.invalid_reason) == (False, "invalid_exact_evm_nonce_already_used")
    await fac.aclose()
    await fac2.aclose()


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"valid_before": int(time.time()) + 3}, "invalid_exact_evm_payload_authorization_valid_before"),
        ({"valid_after": int(time.time()) + 3600}, "invalid_exact_evm_payload_authorization_valid_after"),
    ],
)
async def test_time_window_refusals(chain: DevChain, override: dict[str, Any], reason: str) -> None:
    mw, fac = setup(chain)
    async with client(mw) as c:
        r = await c.get(
            "/paid", headers={"PAYMENT-SIGNATURE": pay_v2(await challenge(c), key=chain.payer_keys[0], **override)}
        )
    assert r.status_code == 402 and r.json()["error"] == reason and b"PAID" not in r.content
    await fac.aclose()


async def test_wrong_signer_is_refused(chain: DevChain) -> None:
    mw, fac = setup(chain)
    async with client(mw) as c:
        ch = await challenge(c)
        good = decode(pay_v2(ch, key=chain.payer_keys[0]))
        forged = decode(pay_v2(ch, key=chain.payer_keys[1]))
        good["payload"]["signature"] = forged["payload"]["signature"]
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": encode(good)})
    assert r.status_code == 402 and r.json()["error"] == "invalid_exact_evm_payload_signature"
    await fac.aclose()


async def test_insufficient_balance_is_refused_at_settlement_and_by_verify(chain: DevChain) -> None:
    mw, fac = setup(chain)
    poor = "0x" + secrets.token_bytes(32).hex()  # a wallet holding no USDC
    async with client(mw) as c:
        sig = pay_v2(await challenge(c), key=poor)
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and b"PAID CONTENT" not in r.content
    assert r.json()["error"] == "invalid_exact_evm_insufficient_balance"
    assert decode(r.headers["payment-response"])["success"] is False
    result = await fac.verify(parse_payment_payload(decode(sig)), mw.gate.routes[0].fixed[0])  # type: ignore[index]
    assert result.invalid_reason == "invalid_exact_evm_insufficient_balance"
    await fac.aclose()


async def test_wrong_token_name_is_diagnosed(chain: DevChain) -> None:
    # The server believes the token is called "USD Coin"; the chain's token says "USDC".
    right = get_network(chain.network)
    register_network(Network("eip155:84532", 84532, Asset(chain.asset, "USD Coin", "2"), "base-sepolia", testnet=True))
    try:
        mw, fac = setup(chain)
    finally:
        register_network(right)
    before = chain.balance_of(chain.payer_addresses[0])
    async with client(mw) as c:
        sig = pay_v2(await challenge(c), key=chain.payer_keys[0])
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and b"PAID CONTENT" not in r.content
    assert r.json()["error"] == "invalid_exact_evm_payload_signature"  # the token rejects the signature
    assert chain.balance_of(chain.payer_addresses[0]) == before
    result = await fac.verify(parse_payment_payload(decode(sig)), mw.gate.routes[0].fixed[0])  # type: ignore[index]
    assert (result.is_valid, result.invalid_reason) == (False, "invalid_exact_evm_token_name_mismatch")
    await fac.aclose()


async def test_verify_accepts_a_good_payment_without_moving_money(chain: DevChain) -> None:
    mw, fac = setup(chain)
    async with client(mw) as c:
        sig = pay_v2(await challenge(c), key=chain.payer_keys[0])
    before = chain.balance_of(chain.payer_addresses[0])
    result = await fac.verify(parse_payment_payload(decode(sig)), mw.gate.routes[0].fixed[0])  # type: ignore[index]
    assert result.is_valid and result.payer == chain.payer_addresses[0]
    assert chain.balance_of(chain.payer_addresses[0]) == before
    assert (await fac.supported())["kinds"][0] == {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}
    await fac.aclose()


async def test_100_concurrent_paid_requests_all_settle_without_nonce_collisions(chain: DevChain) -> None:
    mw, fac = setup(chain, keys=4)
    payers = list(zip(chain.payer_keys, chain.payer_addresses))
    before = {a: chain.balance_of(a) for _, a in payers}
    pay_to_before = chain.balance_of(chain.pay_to)
    async with client(mw) as c:
        ch = await challenge(c)
        sigs = [pay_v2(ch, key=payers[i % len(payers)][0]) for i in range(100)]
        results = await asyncio.gather(*[c.get("/paid", headers={"PAYMENT-SIGNATURE": s}) for s in sigs])
    assert [r.status_code for r in results] == [200] * 100
    hashes = {decode(r.headers["payment-response"])["transaction"] for r in results}
    assert len(hashes) == 100
    for h in hashes:
        assert int(chain.rpc("eth_getTransactionReceipt", h)["status"], 16) == 1
    senders = {chain.rpc("eth_getTransactionByHash", h)["from"].lower() for h in hashes}
    assert len(senders) == 4  # the pool was used
    assert chain.balance_of(chain.pay_to) == pay_to_before + 100 * PRICE
    assert sum(before[a] - chain.balance_of(a) for _, a in payers) == 100 * PRICE
    await fac.aclose()
