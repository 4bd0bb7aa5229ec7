"""The EVM ``exact`` scheme: EIP-3009 ``transferWithAuthorization`` (``../shared/docs/x402-protocol.md`` §3.1-3.2),
or Permit2 when the requirement's ``extra.assetTransferMethod`` is ``"permit2"`` (§3.3, :mod:`.permit2`).

The payload is ``{"signature": "0x…", "authorization": {from, to, value, validAfter, validBefore, nonce}}``,
signed over the token's EIP-712 domain (``extra.name``/``extra.version``). Local verification runs the
official facilitator's checks in its order with its reason strings (x402 2.25.0
``mechanisms/evm/exact/facilitator.py``): scheme, network, EIP-712 domain, recipient, value,
``validBefore``, ``validAfter``, signature. Balance and nonce state are on-chain facts checked by the
facilitator. A payment is identified by ``(chain id, token, payer, nonce)``. A Permit2 payload
(``permit2Authorization``, any ERC-20) is checked by :func:`.permit2.verify_permit2` and identified by
``(chain id, payer, Permit2 nonce)``.

    scheme = find_scheme("exact", "eip155")
    result = scheme.verify(payment, requirement, now=int(time.time()))  # None: a contract-wallet signature
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import MalformedPaymentError
from ...evm.eip3009 import (
    Authorization,
    new_nonce,
    recover_address,
    sign_digest,
    to_checksum_address,
    transfer_digest,
)
from ...models import PaymentPayload, PaymentRequirements, VerifyResult
from ...networks import Asset, Network
from ...verify import UNSUPPORTED_SCHEME
from .. import PaymentId, register_scheme
from .permit2 import (
    EXACT_PERMIT2_PROXY,
    Permit2Payload,
    parse_permit2_payload,
    permit2_payment_id,
    sign_permit2,
    verify_permit2,
)

__all__ = [
    "INVALID_SIGNATURE",
    "MISSING_EIP712_DOMAIN",
    "RECIPIENT_MISMATCH",
    "VALID_AFTER",
    "VALID_BEFORE",
    "VALID_BEFORE_MARGIN",
    "VALUE_MISMATCH",
    "ExactEvmPayload",
    "ExactEvmScheme",
    "verify_exact_evm",
]

# Reason strings ([py] facilitator 2.25; treat as opaque on the wire).
NETWORK_MISMATCH = "network_mismatch"
MISSING_EIP712_DOMAIN = "missing_eip712_domain"
RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
INVALID_SIGNATURE = "invalid_exact_evm_payload_signature"
NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used"

#: A payment must stay valid this many seconds past now, so it can still be settled (facilitators use 6).
VALID_BEFORE_MARGIN = 6
#: Clients back-date ``validAfter`` by this much against clock skew (the official TS client uses 600).
VALID_AFTER_SLACK = 600
#: Longest signature accepted (ERC-6492 wrapped contract-wallet signatures are long, but not this long).
MAX_SIGNATURE_BYTES = 4096

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}\Z")
_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}\Z")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+\Z")
_UINT = re.compile(r"^[0-9]{1,78}\Z")


@dataclass(frozen=True, slots=True)
class ExactEvmPayload:
    """A shape-checked EIP-3009 payment: the signed authorization and its signature (65 bytes for an EOA)."""

    signature: bytes
    authorization: Authorization

    @property
    def payer(self) -> str:
        return self.authorization.from_address

    @property
    def amount(self) -> int:
        return self.authorization.value


def evm_payload(payment: PaymentPayload) -> ExactEvmPayload:
    """The EIP-3009 part of a payment parsed by this scheme (for facilitators settling it)."""
    data = payment.data
    if not isinstance(data, ExactEvmPayload):
        raise MalformedPaymentError("this is not an EIP-3009 'exact' payment (payload.authorization is missing)")
    return data


class ExactEvmScheme:
    """``exact`` on ``eip155`` networks with EIP-3009 (USDC and other FiatTokenV2-style tokens)."""

    scheme = "exact"
    namespace = "eip155"
    address_format = "a 0x-prefixed 20-byte hex address"
    replay_reason = NONCE_ALREADY_USED

    def valid_address(self, value: str) -> bool:
        return isinstance(value, str) and _ADDRESS.match(value) is not None

    def requirement_extra(self, requirement: PaymentRequirements) -> dict[str, Any]:
        # The token's EIP-712 domain: signatures only verify against the token's own name()/version(). A
        # Permit2 requirement for a token without a known domain has none (Permit2 signs its own domain).
        if not requirement.asset.name:
            return {}
        return {"name": requirement.asset.name, "version": requirement.asset.version}

    def parse_requirement(
        self, network: Network, asset: str, pay_to: str, extra: Mapping[str, Any]
    ) -> tuple[Asset, str, dict[str, Any]]:
        method = extra.get("assetTransferMethod", "eip3009")
        if method not in ("eip3009", "permit2"):
            raise MalformedPaymentError(f"transfer method {method!r} is not supported (EIP-3009 or Permit2)")
        return parse_evm_requirement(network, asset, pay_to, extra, domain_required=method == "eip3009")

    def parse_payload(self, payload: Mapping[str, Any]) -> ExactEvmPayload | Permit2Payload:
        if "permit2Authorization" in payload:
            return parse_permit2_payload(payload, upto=False)
        sig = payload.get("signature")
        if not isinstance(sig, str) or not _HEX.match(sig) or len(sig) > 2 + 2 * MAX_SIGNATURE_BYTES:
            raise MalformedPaymentError("payload.signature must be 0x-prefixed hex of at most 4096 bytes")
        auth = payload.get("authorization")
        if not isinstance(auth, dict):
            raise MalformedPaymentError(
                "payload.authorization must be an object (an EIP-3009 'exact' payment on an EVM network)"
            )
        return ExactEvmPayload(bytes.fromhex(sig[2:]), _parse_authorization(auth))

    def verify(self, payment: PaymentPayload, requirement: PaymentRequirements, now: int) -> VerifyResult | None:
        if isinstance(payment.data, Permit2Payload):
            return verify_permit2(payment, requirement, now, upto=False)
        return verify_exact_evm(payment, requirement, now=now)

    def payment_id(self, payment: PaymentPayload, requirement: PaymentRequirements) -> PaymentId:
        if isinstance(payment.data, Permit2Payload):
            return permit2_payment_id(payment, requirement.network)
        auth = evm_payload(payment).authorization
        key = f"x402:{requirement.network.chain_id}:{requirement.asset.address.lower()}:"
        return PaymentId(key + f"{auth.from_address.lower()}:{auth.nonce.hex()}", float(auth.valid_before))

    def sign(self, requirement: PaymentRequirements, key: bytes, now: int) -> dict[str, Any]:
        from ...evm.eip3009 import address_of

        if requirement.extra.get("assetTransferMethod") == "permit2":
            return sign_permit2(requirement, key, now, spender=EXACT_PERMIT2_PROXY)
        auth = Authorization(
            address_of(key),
            requirement.pay_to,
            requirement.amount,
            max(now - VALID_AFTER_SLACK, 0),
            now + requirement.max_timeout_seconds,
            new_nonce(),
        )
        digest = transfer_digest(
            auth,
            name=requirement.asset.name,
            version=requirement.asset.version,
            chain_id=_chain_id(requirement.network),
            verifying_contract=requirement.asset.address,
        )
        return {"signature": "0x" + sign_digest(key, digest).hex(), "authorization": auth.to_wire()}


def parse_evm_requirement(
    network: Network, asset: str, pay_to: str, extra: Mapping[str, Any], *, domain_required: bool
) -> tuple[Asset, str, dict[str, Any]]:
    """A wire EVM requirement's token (with its EIP-712 domain from ``extra`` or the network's default asset),
    recipient and remaining ``extra``. Permit2 payments sign Permit2's domain, so for them (``domain_required``
    false) a token of unknown domain is taken with an empty name and version."""
    if not _ADDRESS.match(asset) or not _ADDRESS.match(pay_to):
        raise MalformedPaymentError("paymentRequirements asset and payTo must be 0x-prefixed 20-byte addresses")
    known = network.asset
    same = known is not None and known.address.lower() == asset.lower()
    decimals = known.decimals if known is not None and same else 6
    name, version = extra.get("name"), extra.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        if known is not None and same:
            name, version = known.name, known.version
        elif domain_required:
            raise MalformedPaymentError("paymentRequirements extra must carry the token's EIP-712 name and version")
        else:
            name, version = "", ""
    rest = {k: v for k, v in extra.items() if k not in ("name", "version")}
    return Asset(asset, name, version, decimals), pay_to, rest


def _chain_id(network: Network) -> int:
    if network.chain_id is None:
        raise MalformedPaymentError(f"network {network.caip2} has no EVM chain id")
    return network.chain_id


def verify_exact_evm(
    payload: PaymentPayload, requirements: PaymentRequirements, *, now: int | None = None
) -> VerifyResult | None:
    """Verify a payment against the requirement it claims to pay.

    Returns a :class:`VerifyResult`, or ``None`` when the signature is not a
    65-byte EOA signature (EIP-1271 / ERC-6492 contract wallets): only a
    facilitator with chain access can check those.

    >>> from x402_middleware.models import PaymentRequirements, parse_payment_payload
    >>> from x402_middleware.networks import get_network
    >>> base = get_network("eip155:8453")
    >>> requirement = PaymentRequirements(base, base.asset, 1000, pay_to="0x" + "22" * 20)
    >>> signed = ExactEvmScheme().sign(requirement, bytes.fromhex("11" * 32), now=1_700_000_000)
    >>> payment = parse_payment_payload({"x402Version": 2, "accepted": requirement.to_v2(), "payload": signed})
    >>> verify_exact_evm(payment, requirement, now=1_700_000_000).is_valid
    True
    >>> verify_exact_evm(payment, requirement, now=1_700_000_000 + 3600).invalid_reason
    'invalid_exact_evm_payload_authorization_valid_before'
    """
    data = evm_payload(payload)
    auth = data.authorization
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
    if len(data.signature) != 65:
        return None
    digest = transfer_digest(
        auth,
        name=name,
        version=version,
        chain_id=_chain_id(requirements.network),
        verifying_contract=requirements.asset.address,
    )
    signer = recover_address(digest, data.signature)  # compared as lower-case hex: no checksum to compute
    if signer is None or "0x" + signer.hex() != payer.lower():
        return fail(
            INVALID_SIGNATURE, "signature does not recover to authorization.from for this token's EIP-712 domain"
        )
    return VerifyResult(True, payer=payer)


def _parse_authorization(auth: Mapping[str, Any]) -> Authorization:
    def address(key: str) -> str:
        value = auth.get(key)
        if not isinstance(value, str) or not _ADDRESS.match(value):
            raise MalformedPaymentError(f"authorization.{key} must be a 0x-prefixed 20-byte hex address")
        return to_checksum_address(value)

    def uint(key: str) -> int:
        value = auth.get(key)
        if type(value) is int and value >= 0:
            value = str(value)
        if not isinstance(value, str) or not _UINT.match(value) or int(value) >= 1 << 256:
            raise MalformedPaymentError(f"authorization.{key} must be a decimal integer string (uint256)")
        return int(value)

    nonce = auth.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise MalformedPaymentError("authorization.nonce must be 0x-prefixed 32-byte hex")
    return Authorization(
        from_address=address("from"),
        to=address("to"),
        value=uint("value"),
        valid_after=uint("validAfter"),
        valid_before=uint("validBefore"),
        nonce=bytes.fromhex(nonce[2:]),
    )


register_scheme(ExactEvmScheme())
