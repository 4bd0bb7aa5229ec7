"""Local verification of EIP-3009 ``exact`` payments: no facilitator round trip.

Checks run in the official facilitator's order and fail with its reason strings
(x402 2.25.0 ``mechanisms/evm/exact/facilitator.py``, ``../shared/docs/x402-protocol.md`` §3.2 (b)):
scheme, network, EIP-712 domain, recipient, value, ``validBefore``, ``validAfter``,
signature. Balance and nonce state are on-chain facts checked at settlement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .evm.eip3009 import recover_address, transfer_digest
from .models import PaymentPayload, PaymentRequirements, VerifyResult

# Reason strings ([py] facilitator 2.25; treat as opaque on the wire).
UNSUPPORTED_SCHEME = "unsupported_scheme"
NETWORK_MISMATCH = "network_mismatch"
MISSING_EIP712_DOMAIN = "missing_eip712_domain"
RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
INVALID_SIGNATURE = "invalid_exact_evm_payload_signature"
NO_MATCHING_REQUIREMENTS = "No matching payment requirements"

#: A payment must stay valid this many seconds past now, so it can still be settled (facilitators use 6).
VALID_BEFORE_MARGIN = 6


def match_requirements(
    payload: PaymentPayload, candidates: Sequence[PaymentRequirements]
) -> PaymentRequirements | None:
    """Find the requirement a payment pays, or ``None``.

    v2 echoes the chosen requirement in ``accepted``: its core fields must equal
    one we offer now (so a dynamic price must be the same on the retry), and our
    ``extra`` keys must be a subset of its ``extra`` ([py] 2.25 rule). v1 names
    only scheme and network; the value is checked during verification.
    """
    acc = payload.accepted
    if acc is not None:
        extra = acc.get("extra")
        for req in candidates:
            if (
                acc.get("scheme") == req.scheme
                and acc.get("network") == req.network.caip2
                and acc.get("amount") == str(req.amount)
                and _same_address(acc.get("asset"), req.asset.address)
                and _same_address(acc.get("payTo"), req.pay_to)
                and acc.get("maxTimeoutSeconds") == req.max_timeout_seconds
                and isinstance(extra, dict)
                and all(extra.get(k) == v for k, v in req.wire_extra().items())
            ):
                return req
        return None
    same_network = [
        r for r in candidates if r.scheme == payload.scheme and payload.network in (r.network.wire_v1, r.network.caip2)
    ]
    for req in same_network:  # several assets on one network: prefer the one whose price the payer signed
        if req.amount == payload.authorization.value:
            return req
    return same_network[0] if same_network else None


def _same_address(value: object, address: str) -> bool:
    return isinstance(value, str) and value.lower() == address.lower()


def verify_exact_evm(
    payload: PaymentPayload, requirements: PaymentRequirements, *, now: int | None = None
) -> VerifyResult | None:
    """Verify a payment against the requirement it claims to pay.

    Returns a :class:`VerifyResult`, or ``None`` when the signature is not a
    65-byte EOA signature (EIP-1271 / ERC-6492 contract wallets): only a
    facilitator with chain access can check those.

    >>> result = verify_exact_evm(payload, requirements)  # doctest: +SKIP
    >>> result.is_valid, result.invalid_reason  # doctest: +SKIP
    (False, 'invalid_exact_evm_payload_authorization_valid_before')
    """
    auth = payload.authorization
    payer = auth.from_address

    def fail(reason: str, message: str) -> VerifyResult:
        return VerifyResult(False, reason, message, payer)

    if payload.scheme != "exact" or requirements.scheme != "exact":
        return fail(UNSUPPORTED_SCHEME, f"scheme {payload.scheme!r} is not supported; pay with 'exact'")
    if payload.network not in (requirements.network.caip2, requirements.network.wire_v1):
        return fail(
            NETWORK_MISMATCH, f"payment is for network {payload.network!r}, expected {requirements.network.caip2!r}"
        )
    extra = requirements.wire_extra()
    name, version = extra.get("name"), extra.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return fail(MISSING_EIP712_DOMAIN, "the requirement's extra must carry the token's EIP-712 name and version")
    if auth.to.lower() != requirements.pay_to.lower():
        return fail(RECIPIENT_MISMATCH, f"authorization pays {auth.to}, expected {requirements.pay_to}")
    if auth.value != requirements.amount:
        return fail(VALUE_MISMATCH, f"authorization value {auth.value} != required amount {requirements.amount}")
    now = int(time.time()) if now is None else now
    if auth.valid_before < now + VALID_BEFORE_MARGIN:
        return fail(
            VALID_BEFORE, "authorization has expired (validBefore is in the past or too close); sign a new payment"
        )
    if auth.valid_after > now:
        return fail(VALID_AFTER, "authorization is not valid yet (validAfter is in the future)")
    if len(payload.signature) != 65:
        return None
    digest = transfer_digest(
        auth,
        name=name,
        version=version,
        chain_id=requirements.network.chain_id,
        verifying_contract=requirements.asset.address,
    )
    signer = recover_address(digest, payload.signature)  # compared as lower-case hex: no checksum to compute
    if signer is None or "0x" + signer.hex() != payer.lower():
        return fail(
            INVALID_SIGNATURE, "signature does not recover to authorization.from for this token's EIP-712 domain"
        )
    return VerifyResult(True, payer=payer)
