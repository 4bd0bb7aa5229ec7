"""OnChainFacilitator with Permit2 payments on a real anvil: ``exact`` (Permit2 variant) and ``upto``.

Balances are read from the chain after every settlement; refusals carry the official reason strings.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx
import pytest
from eth_account import Account

from tests._chain import sign_permit
from tests._payments import decode
from x402_middleware import PaymentMiddleware, PaymentOption, PaymentOptions, X402Auth, settlement_of
from x402_middleware.devchain import DevChain, encode_call
from x402_middleware.devchain.chain import PERMIT2_ADDRESS
from x402_middleware.evm.abi import decode_output, selector
from x402_middleware.facilitator import _permit2
from x402_middleware.facilitator.onchain import OnChainFacilitator
from x402_middleware.models import PaymentPayload, PaymentRequirements, parse_payment_payload
from x402_middleware.networks import get_network
from x402_middleware.schemes import find_scheme

pytestmark = pytest.mark.anyio
MAX = 5_000


def facilitator(chain: DevChain) -> OnChainFacilitator:
    return OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:2], network=chain.network, receipt_timeout=10)


def requirement(chain: DevChain, fac: OnChainFacilitator, scheme: str, amount: int = MAX) -> PaymentRequirements:
    network = get_network(chain.network)
    assert network.asset is not None and network.asset.address == chain.asset
    extra = {"facilitatorAddress": fac.address} if scheme == "upto" else {"assetTransferMethod": "permit2"}
    return PaymentRequirements(network, network.asset, amount, chain.pay_to, 300, scheme, extra)


def pay(
    req: PaymentRequirements, key: str, *, extensions: dict[str, Any] | None = None, **changes: Any
) -> PaymentPayload:
    handler = find_scheme(req.scheme, "eip155")
    assert handler is not None
    signed = handler.sign(dataclasses.replace(req, **changes), bytes.fromhex(key[2:]), int(time.time()))
    wire: dict[str, Any] = {"x402Version": 2, "accepted": req.to_v2(), "payload": signed}
    if extensions:
        wire["extensions"] = extensions
    return parse_payment_payload(wire)


def eip2612_extension(chain: DevChain, key: str, value: int) -> dict[str, Any]:
    """The ``eip2612GasSponsoring`` extension as the official clients build it: a permit of Permit2 for ``value``."""
    owner = Account.from_key(key).address
    (nonce,) = decode_output("(uint256)", chain.call(chain.asset, encode_call("nonces(address)", owner)))
    deadline = int(time.time()) + 600
    signed = sign_permit(chain, key, spender=PERMIT2_ADDRESS, value=value, nonce=nonce, deadline=deadline)
    info = {
        "from": owner,
        "asset": chain.asset,
        "spender": PERMIT2_ADDRESS,
        "amount": str(value),
        "nonce": str(nonce),
        "deadline": str(deadline),
        "signature": "0x" + signed.signature.hex(),
        "version": "1",
    }
    return {"eip2612GasSponsoring": {"info": info, "schema": {}}}


def block_number(chain: DevChain) -> int:
    return int(chain.rpc("eth_blockNumber"), 16)


async def test_supported_lists_exact_and_upto_with_the_facilitator_address(chain: DevChain) -> None:
    fac = facilitator(chain)
    doc = await fac.supported()
    kinds = {(k["x402Version"], k["scheme"]): k for k in doc["kinds"]}
    assert kinds[(2, "upto")]["extra"] == {"facilitatorAddress": chain.facilitator_addresses[0]}
    assert (2, "exact") in kinds and "eip2612GasSponsoring" in doc["extensions"]
    await fac.aclose()


async def test_exact_permit2_settles_the_signed_amount(chain: DevChain) -> None:
    fac = facilitator(chain)
    payer, key = chain.payer_addresses[0], chain.payer_keys[0]
    req = requirement(chain, fac, "exact", 1_234)
    payment = pay(req, key)
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    assert (await fac.verify(payment, req)).is_valid
    result = await fac.settle(payment, req)
    assert result.success and result.amount == 1_234, result
    receipt = chain.rpc("eth_getTransactionReceipt", result.transaction)
    assert receipt["to"].lower() == "0x402085c248eea27d92e8b30b2c58ed07f9e20001"
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - 1_234, before[1] + 1_234)
    again = await fac.settle(payment, req)  # a replay: no second transaction
    assert not again.success and again.error_reason == "invalid_exact_evm_nonce_already_used"
    assert (await fac.verify(payment, req)).invalid_reason == "invalid_exact_evm_nonce_already_used"
    assert chain.balance_of(payer) == before[0] - 1_234
    await fac.aclose()


@pytest.mark.parametrize("actual", [1, 2_345, MAX])
async def test_upto_settles_the_actual_amount(chain: DevChain, actual: int) -> None:
    fac = facilitator(chain)
    payer, key = chain.payer_addresses[1], chain.payer_keys[1]
    req = requirement(chain, fac, "upto")
    payment = pay(req, key)
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    assert (await fac.verify(payment, req)).is_valid
    result = await fac.settle(payment, dataclasses.replace(req, amount=actual))
    assert result.success and result.amount == actual and result.transaction, result
    receipt = chain.rpc("eth_getTransactionReceipt", result.transaction)
    assert receipt["to"].lower() == "0x4020a4f3b7b90cca423b9fabcc0ce57c6c240002"
    assert receipt["from"].lower() == fac.address.lower()  # only the witness's facilitator may settle
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - actual, before[1] + actual)
    replay = await fac.settle(payment, dataclasses.replace(req, amount=actual))
    assert not replay.success and replay.error_reason == "permit2_invalid_nonce"
    assert (await fac.verify(payment, req)).invalid_reason == "permit2_invalid_nonce"
    assert chain.balance_of(payer) == before[0] - actual
    await fac.aclose()


async def test_upto_zero_sends_nothing_and_above_the_maximum_is_refused(chain: DevChain) -> None:
    fac = facilitator(chain)
    payer, key = chain.payer_addresses[1], chain.payer_keys[1]
    req = requirement(chain, fac, "upto")
    payment = pay(req, key)
    before, height = chain.balance_of(payer), block_number(chain)
    zero = await fac.settle(payment, dataclasses.replace(req, amount=0))
    assert zero.success and zero.amount == 0 and zero.transaction == ""
    over = await fac.settle(payment, dataclasses.replace(req, amount=MAX + 1))
    assert not over.success and over.error_reason == "invalid_upto_evm_payload_settlement_exceeds_amount"
    assert (chain.balance_of(payer), block_number(chain)) == (before, height)  # no transaction at all
    await fac.aclose()


async def test_on_chain_refusals_in_order(chain: DevChain) -> None:
    fac = facilitator(chain)
    payer, key = chain.payer_addresses[2], chain.payer_keys[2]
    for scheme, poor in (("exact", "invalid_exact_evm_insufficient_balance"), ("upto", "permit2_insufficient_balance")):
        req = requirement(chain, fac, scheme)
        # witness for another facilitator: refused before anything is read from the chain
        if scheme == "upto":
            other = dataclasses.replace(req, extra={"facilitatorAddress": chain.facilitator_addresses[3]})
            assert (await fac.verify(pay(other, key), other)).invalid_reason == "upto_facilitator_mismatch"
        # no allowance and too little balance: the allowance is reported first
        chain.approve_permit2(payer, 0)
        await _expire_facts(fac)
        rich = dataclasses.replace(req, amount=chain.balance_of(payer) + 1)
        assert (await fac.verify(pay(rich, key), rich)).invalid_reason == "permit2_allowance_required"
        await _expire_facts(fac)
        chain.approve_permit2(payer)
        assert (await fac.verify(pay(rich, key), rich)).invalid_reason == poor
        assert (await fac.verify(pay(req, key), req)).is_valid
    await fac.aclose()


async def _expire_facts(fac: OnChainFacilitator) -> None:
    fac.permit2._facts.clear()  # the per-payer cache lives for fact_ttl; the test changes the chain under it


async def test_asset_without_code_is_refused(chain: DevChain) -> None:
    nowhere = "0x" + "77" * 20
    fac = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network, assets=[nowhere])
    req = requirement(chain, fac, "upto")
    req = dataclasses.replace(req, asset=dataclasses.replace(req.asset, address=nowhere))
    assert (await fac.verify(pay(req, chain.payer_keys[0]), req)).invalid_reason == "asset_not_deployed_contract"
    await fac.aclose()


async def test_allowance_revoked_between_verify_and_settle_fails_once_with_a_reason(chain: DevChain) -> None:
    fac = facilitator(chain)
    payer, key = chain.payer_addresses[0], chain.payer_keys[0]
    req = requirement(chain, fac, "upto")
    payment = pay(req, key)
    assert (await fac.verify(payment, req)).is_valid
    chain.approve_permit2(payer, 0)  # the payer revokes while the app runs
    before, height = chain.balance_of(payer), block_number(chain)
    for _ in range(2):  # a second attempt gets the same answer at once; nothing is sent or retried
        started = time.monotonic()
        result = await fac.settle(payment, dataclasses.replace(req, amount=1_000))
        assert not result.success and result.error_reason == "permit2_allowance_required", result
        assert result.transaction == "" and time.monotonic() - started < 2
    assert (chain.balance_of(payer), block_number(chain)) == (before, height)
    await fac.aclose()


@pytest.mark.parametrize("scheme", ["exact", "upto"])
async def test_gas_sponsored_permit_pays_without_an_allowance(chain: DevChain, scheme: str) -> None:
    fac = facilitator(chain)
    payer, key = chain.payer_addresses[1], chain.payer_keys[1]
    chain.approve_permit2(payer, 0)
    req = requirement(chain, fac, scheme)
    assert (await fac.verify(pay(req, key), req)).invalid_reason == "permit2_allowance_required"
    payment = pay(req, key, extensions=eip2612_extension(chain, key, MAX))
    assert (await fac.verify(payment, req)).is_valid
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    actual = 3_000 if scheme == "upto" else MAX
    result = await fac.settle(payment, dataclasses.replace(req, amount=actual) if scheme == "upto" else req)
    assert result.success and result.amount == actual, result
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - actual, before[1] + actual)
    assert chain.allowance(payer) == MAX - actual  # the EIP-2612 permit approved Permit2 in the same transaction
    sent = chain.rpc("eth_getTransactionByHash", result.transaction)
    assert sent["input"].startswith(
        "0x"
        + selector(_permit2.EXACT_SETTLE_WITH_PERMIT if scheme == "exact" else _permit2.UPTO_SETTLE_WITH_PERMIT).hex()
    )
    wrong = eip2612_extension(chain, key, MAX)
    wrong["eip2612GasSponsoring"]["info"]["spender"] = chain.asset
    chain.approve_permit2(payer, 0)
    refused = await fac.verify(pay(req, key, extensions=wrong), req)
    assert refused.invalid_reason == "eip2612_spender_not_permit2"
    await fac.aclose()


async def _paid_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"PAID"})


async def test_x402auth_pays_an_exact_permit2_route_of_our_middleware(chain: DevChain) -> None:
    fac = facilitator(chain)
    permit2 = PaymentOption(chain.network, extra={"assetTransferMethod": "permit2"})
    routes = {"GET /p": PaymentOptions("$0.0042", [permit2, PaymentOption(chain.network)])}
    mw = PaymentMiddleware(_paid_app, routes=routes, pay_to=chain.pay_to, network=chain.network, facilitator=fac)
    payer = chain.payer_addresses[0]
    auth = X402Auth(chain.payer_keys[0], max_total_spend="$0.01")
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", auth=auth) as c:
        r = await c.get("/p")
    assert r.status_code == 200 and r.text == "PAID"
    sent = decode(r.request.headers["payment-signature"])
    assert "permit2Authorization" in sent["payload"]  # the server's first option: Permit2
    settled = settlement_of(r)
    assert settled is not None and settled.success
    tx = chain.rpc("eth_getTransactionReceipt", settled.transaction)
    assert tx["to"].lower() == "0x402085c248eea27d92e8b30b2c58ed07f9e20001"
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - 4_200, before[1] + 4_200)
    assert auth.spent == 4_200
    await fac.aclose()


async def test_allowance_and_balance_are_read_once_per_payer_within_fact_ttl(chain: DevChain) -> None:
    fac = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network, fact_ttl=30)
    calls: list[str] = []
    rpc = fac.rpc

    async def counting(method: str, *params: Any) -> Any:
        if method == "eth_call":
            calls.append(params[0]["data"][:10])
        return await rpc(method, *params)

    fac.rpc = counting  # type: ignore[assignment]
    req = requirement(chain, fac, "upto")
    reads = {"0x" + selector("allowance(address,address)").hex(), "0x" + selector("balanceOf(address)").hex()}
    for _ in range(3):  # three payments of one payer: the chain facts are read once, each payment simulated
        assert (await fac.verify(pay(req, chain.payer_keys[0]), req)).is_valid
    assert sorted(c for c in calls if c in reads) == sorted(reads)
    assert calls.count("0x" + selector(_permit2.UPTO_SETTLE).hex()) == 3
    payment = pay(req, chain.payer_keys[0])
    assert (await fac.settle(payment, dataclasses.replace(req, amount=10))).success
    calls.clear()  # a settlement by this payer drops its facts: the next verify reads them again
    assert (await fac.verify(pay(req, chain.payer_keys[0]), req)).is_valid
    assert sorted(c for c in calls if c in reads) == sorted(reads)
    fac.rpc = rpc
    await fac.aclose()


async def test_upto_for_any_of_the_facilitators_keys_is_sent_from_that_key(chain: DevChain) -> None:
    fac = facilitator(chain)  # keys 0 and 1; /supported names key 0
    second = chain.facilitator_addresses[1]
    req = dataclasses.replace(requirement(chain, fac, "upto"), extra={"facilitatorAddress": second})
    payment = pay(req, chain.payer_keys[2])
    assert (await fac.verify(payment, req)).is_valid
    result = await fac.settle(payment, dataclasses.replace(req, amount=77))
    assert result.success and result.amount == 77
    assert chain.rpc("eth_getTransactionReceipt", result.transaction)["from"].lower() == second.lower()
    await fac.aclose()
