"""Permit2 payments (``exact`` with ``assetTransferMethod: "permit2"`` and ``upto``) without a chain.

The hand-specialised digest is checked against generic EIP-712 (eth-account) with the official SDK's type
tables, and every local refusal is checked in the official facilitator's order: a payment wrong in several
ways gets the reason of the first check, and fixing that one uncovers the next.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from tests._chain import permit2_typed_data, sign_typed
from x402_middleware.models import PaymentPayload, PaymentRequirements, parse_payment_payload
from x402_middleware.networks import Asset, Network
from x402_middleware.schemes import find_scheme
from x402_middleware.schemes.evm.permit2 import (
    EXACT_PERMIT2_PROXY,
    PERMIT2_ADDRESS,
    UPTO_PERMIT2_PROXY,
    parse_permit2_payload,
    permit2_digest,
)

NOW = 1_700_000_000
KEY = bytes.fromhex("11" * 32)
PAYER = Account.from_key(KEY).address
FACILITATOR = "0x" + "fa" * 20
PAY_TO = "0x" + "22" * 20
TOKEN = "0x" + "33" * 20
NETWORK = Network("eip155:8453", 8453)


def _requirement(scheme: str, amount: int = 1000) -> PaymentRequirements:
    extra: dict[str, Any] = {"assetTransferMethod": "permit2"} if scheme == "exact" else {}
    if scheme == "upto":
        extra["facilitatorAddress"] = FACILITATOR
    return PaymentRequirements(NETWORK, Asset(TOKEN, "Token", "1"), amount, PAY_TO, 300, scheme, extra)


def _payment(requirement: PaymentRequirements, payload: dict[str, Any] | None = None) -> PaymentPayload:
    scheme = find_scheme(requirement.scheme, "eip155")
    assert scheme is not None
    signed = payload if payload is not None else scheme.sign(requirement, KEY, NOW)
    return parse_payment_payload({"x402Version": 2, "accepted": requirement.to_v2(), "payload": signed})


@pytest.mark.parametrize("scheme", ["exact", "upto"])
def test_digest_is_generic_eip712_with_the_official_types(scheme: str) -> None:
    requirement = _requirement(scheme)
    signed = find_scheme(scheme, "eip155").sign(requirement, KEY, NOW)  # type: ignore[union-attr]
    wire = signed["permit2Authorization"]
    auth = parse_permit2_payload(signed, upto=scheme == "upto").authorization
    witness = {k: (int(v) if k == "validAfter" else v) for k, v in wire["witness"].items()}
    typed = permit2_typed_data(
        8453,
        {
            "permitted": {"token": TOKEN, "amount": 1000},
            "spender": UPTO_PERMIT2_PROXY if scheme == "upto" else EXACT_PERMIT2_PROXY,
            "nonce": int(wire["nonce"]),
            "deadline": NOW + 300,
            "witness": witness,
        },
    )
    message = encode_typed_data(full_message=typed)
    from eth_utils.crypto import keccak

    # EIP-191 version 0x01: keccak(0x19 || 0x01 || domainSeparator || hashStruct(message))
    assert permit2_digest(auth, 8453) == keccak(b"\x19" + message.version + message.header + message.body)
    assert Account.recover_message(message, signature=bytes.fromhex(signed["signature"][2:])) == PAYER
    assert wire["witness"]["to"].lower() == PAY_TO
    if scheme == "upto":
        assert wire["witness"]["facilitator"].lower() == FACILITATOR


def _reissue(requirement: PaymentRequirements, **changes: Any) -> dict[str, Any]:
    """A payload signed (correctly) for an authorization with ``changes``."""
    from x402_middleware.evm.eip3009 import sign_digest

    signed = find_scheme(requirement.scheme, "eip155").sign(requirement, KEY, NOW)  # type: ignore[union-attr]
    auth = dataclasses.replace(
        parse_permit2_payload(signed, upto=requirement.scheme == "upto").authorization, **changes
    )
    return {
        "signature": "0x" + sign_digest(KEY, permit2_digest(auth, 8453)).hex(),
        "permit2Authorization": auth.to_wire(),
    }


EXACT_ORDER = [
    ("unsupported_scheme", None),
    ("network_mismatch", None),
    ("invalid_permit2_spender", {"spender": UPTO_PERMIT2_PROXY}),
    ("invalid_permit2_recipient_mismatch", {"to": "0x" + "44" * 20}),
    ("permit2_deadline_expired", {"deadline": NOW + 5}),
    ("permit2_not_yet_valid", {"valid_after": NOW + 60}),
    ("permit2_amount_mismatch", {"amount": 999}),
    ("permit2_token_mismatch", {"token": "0x" + "55" * 20}),
]


@pytest.mark.parametrize("scheme", ["exact", "upto"])
def test_every_local_refusal_in_the_official_order(scheme: str) -> None:
    requirement = _requirement(scheme)
    handler = find_scheme(scheme, "eip155")
    assert handler is not None
    steps = list(EXACT_ORDER)
    if scheme == "upto":
        steps[0] = ("invalid_upto_evm_scheme", None)
        steps[1] = ("invalid_upto_evm_network_mismatch", None)
        steps[2] = ("invalid_permit2_spender", {"spender": EXACT_PERMIT2_PROXY})
        steps.insert(4, ("upto_facilitator_mismatch", {"facilitator": "0x" + "66" * 20}))
    # All faults at once, then remove them one by one: each time the first remaining one is reported.
    faults = {k: v for _, change in steps if change for k, v in change.items()}
    for index, (reason, _change) in enumerate(steps):
        later = {k: v for _, change in steps[index:] if change for k, v in change.items()}
        payload = _reissue(requirement, **{k: v for k, v in faults.items() if k in later})
        accepted = requirement.to_v2()
        if index == 0:
            accepted["scheme"] = "upto" if scheme == "exact" else "exact"
        if index <= 1:
            accepted["network"] = "eip155:1"
        raw = {"x402Version": 2, "accepted": {**accepted, "scheme": accepted["scheme"]}, "payload": payload}
        # The payload is parsed by the scheme the requirement names (what a facilitator does).
        payment = PaymentPayload(
            2, accepted["scheme"], accepted["network"], accepted, raw, handler.parse_payload(payload)
        )
        result = handler.verify(payment, requirement, NOW)
        assert result is not None and result.invalid_reason == reason, (index, result)
    payload = _reissue(requirement)
    other = find_scheme(scheme, "eip155").sign(requirement, bytes.fromhex("12" * 32), NOW)  # type: ignore[union-attr]
    bad_signature = {**payload, "signature": other["signature"]}  # another key signed (another nonce)
    for signed, valid in ((payload, True), (bad_signature, False)):
        result = handler.verify(_payment(requirement, signed), requirement, NOW)
        assert result is not None and result.is_valid is valid
        assert valid or result.invalid_reason == "invalid_permit2_signature"


def test_payment_id_is_owner_and_nonce_on_the_chain() -> None:
    exact, upto = _requirement("exact"), _requirement("upto")
    a, b = _payment(exact), _payment(upto)
    scheme = find_scheme("exact", "eip155")
    assert scheme is not None
    key_a = scheme.payment_id(a, exact).key
    nonce = a.data.authorization.nonce
    assert key_a == f"x402:8453:permit2:{PAYER.lower()}:{nonce}"
    assert key_a != find_scheme("upto", "eip155").payment_id(b, upto).key  # type: ignore[union-attr]
    assert scheme.payment_id(a, exact).expires_at == NOW + 300


def test_upto_needs_a_facilitator_address_to_sign() -> None:
    requirement = dataclasses.replace(_requirement("upto"), extra={})
    with pytest.raises(Exception, match="facilitatorAddress"):
        find_scheme("upto", "eip155").sign(requirement, KEY, NOW)  # type: ignore[union-attr]


def test_remote_facilitator_sends_the_upto_settle_amount_as_given() -> None:
    from x402_middleware.facilitator._wire import request_body

    requirement = _requirement("upto", amount=5_000)
    payment = _payment(requirement)
    body = request_body(payment, dataclasses.replace(requirement, amount=1_234))
    assert body["paymentRequirements"]["amount"] == "1234"  # the actual charge; the payload keeps the maximum
    assert body["paymentPayload"]["payload"]["permit2Authorization"]["permitted"]["amount"] == "5000"
    assert body["paymentRequirements"]["extra"]["facilitatorAddress"] == FACILITATOR


def test_eip2612_permit_digest_is_generic_eip712() -> None:
    from x402_middleware.evm.eip2612 import permit_digest
    from x402_middleware.evm.eip3009 import recover_signer

    deadline = NOW + 600
    domain = {"name": "Token", "version": "1", "chainId": 8453, "verifyingContract": TOKEN}
    fields = [{"name": n, "type": t} for n, t in PERMIT_FIELDS]
    message = {"owner": PAYER, "spender": PERMIT2_ADDRESS, "value": 1000, "nonce": 3, "deadline": deadline}
    signed = sign_typed("0x" + KEY.hex(), domain, "Permit", fields, message)
    digest = permit_digest(
        PAYER, PERMIT2_ADDRESS, 1000, 3, deadline, name="Token", version="1", chain_id=8453, token=TOKEN
    )
    assert recover_signer(digest, signed.signature) == PAYER


PERMIT_FIELDS = [
    ("owner", "address"),
    ("spender", "address"),
    ("value", "uint256"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
]
