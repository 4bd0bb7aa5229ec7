"""Permit2 ``PermitWitnessTransferFrom`` payments, shared by ``exact`` (Permit2 variant) and ``upto``.

``../shared/docs/x402-protocol.md`` §3.3-3.4. The payer signs, over Uniswap Permit2's EIP-712 domain
``{name: "Permit2", chainId, verifyingContract: 0x0000…22D473…BA3}`` (no version), a one-time transfer of
``permitted.amount`` of ``permitted.token`` to a spender (one of the x402 proxies) with a witness that binds
the recipient (``to``), ``validAfter`` and, for ``upto``, the ``facilitator`` allowed to choose the amount::

    {"signature": "0x…", "permit2Authorization": {"from", "permitted": {"token", "amount"}, "spender",
     "nonce", "deadline", "witness": {"to", ["facilitator",] "validAfter"}}}

The digest is hand-specialised (fixed-layout words, as :mod:`x402_middleware.evm.eip3009`), checked against
generic EIP-712 in the tests. :func:`verify_permit2` runs the official facilitator's local checks in its
order with its reason strings (x402 2.25.0 ``mechanisms/evm/exact/permit2_utils.py`` and
``upto/permit2_utils.py``); allowance, balance and the nonce bitmap are on-chain facts a facilitator checks.
A Permit2 nonce is unique per owner on a chain (across tokens and spenders): that is the payment's identity.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import MalformedPaymentError
from ...evm.eip3009 import address_of, keccak, recover_address, sign_digest, to_checksum_address
from ...models import PaymentPayload, PaymentRequirements, VerifyResult
from ...networks import Network
from .. import PaymentId

__all__ = [
    "EXACT_PERMIT2_PROXY",
    "PERMIT2_ADDRESS",
    "UPTO_PERMIT2_PROXY",
    "Permit2Authorization",
    "Permit2Payload",
    "parse_permit2_payload",
    "permit2_digest",
    "permit2_payment_id",
    "sign_permit2",
    "verify_permit2",
]

PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
EXACT_PERMIT2_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
UPTO_PERMIT2_PROXY = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"

# Reason strings ([py] facilitator 2.25: mechanisms/evm/constants.py; treat as opaque on the wire).
INVALID_SPENDER = "invalid_permit2_spender"
RECIPIENT_MISMATCH = "invalid_permit2_recipient_mismatch"
DEADLINE_EXPIRED = "permit2_deadline_expired"
NOT_YET_VALID = "permit2_not_yet_valid"
AMOUNT_MISMATCH = "permit2_amount_mismatch"
TOKEN_MISMATCH = "permit2_token_mismatch"
INVALID_SIGNATURE = "invalid_permit2_signature"
ALLOWANCE_REQUIRED = "permit2_allowance_required"
INVALID_NONCE = "permit2_invalid_nonce"
UPTO_INVALID_SCHEME = "invalid_upto_evm_scheme"
UPTO_NETWORK_MISMATCH = "invalid_upto_evm_network_mismatch"
UPTO_FACILITATOR_MISMATCH = "upto_facilitator_mismatch"
UPTO_SETTLEMENT_EXCEEDS_AMOUNT = "invalid_upto_evm_payload_settlement_exceeds_amount"

#: ``deadline`` must be at least this many seconds away, so the payment can still be settled (as facilitators).
DEADLINE_MARGIN = 6

_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,uint256 chainId,address verifyingContract)")
_NAME_HASH = keccak(b"Permit2")
_TOKEN_PERMISSIONS = b"TokenPermissions(address token,uint256 amount)"
_TOKEN_PERMISSIONS_TYPEHASH = keccak(_TOKEN_PERMISSIONS)
_STUB = b"PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,"
_EXACT_WITNESS = b"Witness(address to,uint256 validAfter)"
_UPTO_WITNESS = b"Witness(address to,address facilitator,uint256 validAfter)"
# The proxies' WITNESS_TYPE_STRING: the type hash is keccak(stub || this), as Permit2 computes it.
_EXACT_TYPEHASH = keccak(_STUB + b"Witness witness)" + _TOKEN_PERMISSIONS + _EXACT_WITNESS)
_UPTO_TYPEHASH = keccak(_STUB + b"Witness witness)" + _TOKEN_PERMISSIONS + _UPTO_WITNESS)
_EXACT_WITNESS_TYPEHASH = keccak(_EXACT_WITNESS)
_UPTO_WITNESS_TYPEHASH = keccak(_UPTO_WITNESS)

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}\Z")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+\Z")
_UINT = re.compile(r"^[0-9]{1,78}\Z")
_MAX_SIGNATURE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Permit2Authorization:
    """The signed fields of a Permit2 witness transfer; ``facilitator`` is set for ``upto`` only."""

    from_address: str
    token: str
    amount: int
    spender: str
    nonce: int
    deadline: int
    to: str
    valid_after: int
    facilitator: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The x402 JSON form (every number a decimal string)."""
        witness: dict[str, str] = {"to": self.to}
        if self.facilitator is not None:
            witness["facilitator"] = self.facilitator
        witness["validAfter"] = str(self.valid_after)
        return {
            "from": self.from_address,
            "permitted": {"token": self.token, "amount": str(self.amount)},
            "spender": self.spender,
            "nonce": str(self.nonce),
            "deadline": str(self.deadline),
            "witness": witness,
        }


@dataclass(frozen=True, slots=True)
class Permit2Payload:
    """A shape-checked Permit2 payment: the authorization and its signature (65 bytes for an EOA)."""

    signature: bytes
    authorization: Permit2Authorization

    @property
    def payer(self) -> str:
        return self.authorization.from_address

    @property
    def amount(self) -> int:
        """The signed amount: what ``exact`` transfers, the maximum for ``upto``."""
        return self.authorization.amount


def permit2_payload(payment: PaymentPayload) -> Permit2Payload:
    """The Permit2 part of a payment (for facilitators settling it)."""
    data = payment.data
    if not isinstance(data, Permit2Payload):
        raise MalformedPaymentError("this is not a Permit2 payment (payload.permit2Authorization is missing)")
    return data


def _word(address: str) -> bytes:
    return b"\x00" * 12 + bytes.fromhex(address[2:])


def domain_separator(chain_id: int) -> bytes:
    """Permit2's EIP-712 domain separator on ``chain_id`` (what its ``DOMAIN_SEPARATOR()`` returns)."""
    return keccak(_DOMAIN_TYPEHASH + _NAME_HASH + chain_id.to_bytes(32, "big") + _word(PERMIT2_ADDRESS))


def permit2_digest(auth: Permit2Authorization, chain_id: int) -> bytes:
    """The 32-byte EIP-712 digest a payer signs for ``auth`` (an ``upto`` witness when ``facilitator`` is set)."""
    if auth.facilitator is None:
        typehash = _EXACT_TYPEHASH
        witness = keccak(_EXACT_WITNESS_TYPEHASH + _word(auth.to) + auth.valid_after.to_bytes(32, "big"))
    else:
        typehash = _UPTO_TYPEHASH
        witness = keccak(
            _UPTO_WITNESS_TYPEHASH + _word(auth.to) + _word(auth.facilitator) + auth.valid_after.to_bytes(32, "big")
        )
    permitted = keccak(_TOKEN_PERMISSIONS_TYPEHASH + _word(auth.token) + auth.amount.to_bytes(32, "big"))
    struct = keccak(
        typehash
        + permitted
        + _word(auth.spender)
        + auth.nonce.to_bytes(32, "big")
        + auth.deadline.to_bytes(32, "big")
        + witness
    )
    return keccak(b"\x19\x01" + domain_separator(chain_id) + struct)


def sign_permit2(
    requirement: PaymentRequirements, key: bytes, now: int, *, spender: str, facilitator: str | None = None
) -> dict[str, Any]:
    """The wire ``payload`` paying ``requirement`` through ``spender`` (``upto``: for its maximum).

    ``validAfter`` is 0 and ``deadline`` now + ``maxTimeoutSeconds`` (as the official clients sign);
    the nonce is 256 random bits (Permit2's nonces are an unordered bitmap).
    """
    if requirement.network.chain_id is None:
        raise MalformedPaymentError(f"network {requirement.network.caip2} has no EVM chain id")
    auth = Permit2Authorization(
        from_address=address_of(key),
        token=to_checksum_address(requirement.asset.address),
        amount=requirement.amount,
        spender=spender,
        nonce=int.from_bytes(secrets.token_bytes(32), "big"),
        deadline=now + requirement.max_timeout_seconds,
        to=to_checksum_address(requirement.pay_to),
        valid_after=0,
        facilitator=None if facilitator is None else to_checksum_address(facilitator),
    )
    signature = sign_digest(key, permit2_digest(auth, requirement.network.chain_id))
    return {"signature": "0x" + signature.hex(), "permit2Authorization": auth.to_wire()}


#: The v2 extension by which a payer without a Permit2 allowance sends an EIP-2612 permit for Permit2.
EIP2612_GAS_SPONSORING = "eip2612GasSponsoring"


def eip2612_gas_sponsoring(requirement: PaymentRequirements, key: bytes, nonce: int, deadline: int) -> dict[str, Any]:
    """The ``eip2612GasSponsoring`` extension entry: ``key`` permits Permit2 to spend ``requirement.amount``.

    ``nonce`` is the payer's current ``nonces(owner)`` on the token; the facilitator submits the permit with the
    payment (``settleWithPermit``). Needs the token's EIP-712 ``name``/``version`` (``extra``), as the official
    clients do.
    """
    from ...evm.eip2612 import permit_digest

    chain_id = requirement.network.chain_id
    if chain_id is None or not requirement.asset.name:
        raise MalformedPaymentError("an EIP-2612 permit needs an EVM chain id and the token's EIP-712 name/version")
    owner, token = address_of(key), to_checksum_address(requirement.asset.address)
    digest = permit_digest(
        owner,
        PERMIT2_ADDRESS,
        requirement.amount,
        nonce,
        deadline,
        name=requirement.asset.name,
        version=requirement.asset.version,
        chain_id=chain_id,
        token=token,
    )
    info = {
        "from": owner,
        "asset": token,
        "spender": PERMIT2_ADDRESS,
        "amount": str(requirement.amount),
        "nonce": str(nonce),
        "deadline": str(deadline),
        "signature": "0x" + sign_digest(key, digest).hex(),
        "version": "1",
    }
    return {"info": info}


def parse_permit2_payload(payload: Mapping[str, Any], *, upto: bool) -> Permit2Payload:
    """Shape-check a Permit2 wire payload; raises :class:`MalformedPaymentError` naming the bad field."""
    sig = payload.get("signature")
    if not isinstance(sig, str) or not _HEX.match(sig) or len(sig) > 2 + 2 * _MAX_SIGNATURE_BYTES:
        raise MalformedPaymentError("payload.signature must be 0x-prefixed hex of at most 4096 bytes")
    auth = payload.get("permit2Authorization")
    if not isinstance(auth, Mapping):
        raise MalformedPaymentError("payload.permit2Authorization must be an object (a Permit2 payment)")
    permitted, witness = auth.get("permitted"), auth.get("witness")
    if not isinstance(permitted, Mapping) or not isinstance(witness, Mapping):
        raise MalformedPaymentError("permit2Authorization.permitted and .witness must be objects")

    def address(obj: Mapping[str, Any], key: str, where: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not _ADDRESS.match(value):
            raise MalformedPaymentError(f"permit2Authorization.{where}{key} must be a 0x-prefixed 20-byte hex address")
        return to_checksum_address(value)

    def uint(obj: Mapping[str, Any], key: str, where: str) -> int:
        value = obj.get(key)
        if type(value) is int and value >= 0:
            value = str(value)
        if not isinstance(value, str) or not _UINT.match(value) or int(value) >= 1 << 256:
            raise MalformedPaymentError(f"permit2Authorization.{where}{key} must be a decimal integer string (uint256)")
        return int(value)

    return Permit2Payload(
        bytes.fromhex(sig[2:]),
        Permit2Authorization(
            from_address=address(auth, "from", ""),
            token=address(permitted, "token", "permitted."),
            amount=uint(permitted, "amount", "permitted."),
            spender=address(auth, "spender", ""),
            nonce=uint(auth, "nonce", ""),
            deadline=uint(auth, "deadline", ""),
            to=address(witness, "to", "witness."),
            valid_after=uint(witness, "validAfter", "witness."),
            facilitator=address(witness, "facilitator", "witness.") if upto else None,
        ),
    )


def verify_permit2(
    payment: PaymentPayload,
    requirement: PaymentRequirements,
    now: int,
    *,
    upto: bool,
    facilitators: Collection[str] | None = None,
) -> VerifyResult | None:
    """The official facilitator's local Permit2 checks, in its order; the first failing reason wins.

    ``exact``: scheme (``unsupported_scheme``), network (``network_mismatch``), spender is the exact proxy,
    recipient, deadline, validAfter, amount, token, signature. ``upto``: scheme and network with the
    ``invalid_upto_evm_*`` reasons, spender is the upto proxy, recipient, the witness's facilitator is one of
    ``facilitators`` (skipped when ``None``), then the same as ``exact``. ``None``: the signature is not a
    65-byte EOA signature (a contract wallet), which only the chain can check.
    """
    data = permit2_payload(payment)
    auth = data.authorization
    payer = auth.from_address

    def fail(reason: str, message: str) -> VerifyResult:
        return VerifyResult(False, reason, message, payer)

    wanted = "upto" if upto else "exact"
    if payment.scheme != wanted or (upto and requirement.scheme != wanted):
        return fail(UPTO_INVALID_SCHEME if upto else "unsupported_scheme", f"pay this requirement with {wanted!r}")
    if payment.network not in (requirement.network.caip2, requirement.network.wire_v1):
        return fail(
            UPTO_NETWORK_MISMATCH if upto else "network_mismatch",
            f"payment is for network {payment.network!r}, expected {requirement.network.caip2!r}",
        )
    proxy = UPTO_PERMIT2_PROXY if upto else EXACT_PERMIT2_PROXY
    if auth.spender.lower() != proxy.lower():
        return fail(INVALID_SPENDER, f"permit2Authorization.spender must be the x402 {wanted} Permit2 proxy {proxy}")
    if auth.to.lower() != requirement.pay_to.lower():
        return fail(RECIPIENT_MISMATCH, f"witness.to is {auth.to}, expected {requirement.pay_to}")
    named = {f.lower() for f in facilitators} if upto and facilitators is not None else None
    if named is not None and (auth.facilitator or "").lower() not in named:
        return fail(
            UPTO_FACILITATOR_MISMATCH,
            f"witness.facilitator {auth.facilitator} is not this facilitator ({', '.join(sorted(named))}); "
            "sign for the requirement's extra.facilitatorAddress",
        )
    if auth.deadline < now + DEADLINE_MARGIN:
        return fail(DEADLINE_EXPIRED, "the Permit2 deadline has passed (or is too close); sign a new payment")
    if auth.valid_after > now:
        return fail(NOT_YET_VALID, "witness.validAfter is in the future")
    if auth.amount != requirement.amount:
        return fail(AMOUNT_MISMATCH, f"permitted.amount {auth.amount} != required amount {requirement.amount}")
    if auth.token.lower() != requirement.asset.address.lower():
        return fail(TOKEN_MISMATCH, f"permitted.token is {auth.token}, expected {requirement.asset.address}")
    if len(data.signature) != 65:
        return None
    chain_id = requirement.network.chain_id
    signer = None if chain_id is None else recover_address(permit2_digest(auth, chain_id), data.signature)
    if signer is None or "0x" + signer.hex() != payer.lower():
        return fail(INVALID_SIGNATURE, "signature does not recover to permit2Authorization.from for Permit2's domain")
    return VerifyResult(True, payer=payer)


def permit2_payment_id(payment: PaymentPayload, network: Network) -> PaymentId:
    """A Permit2 payment's identity: its nonce is single-use per owner on a chain, whatever the token."""
    auth = permit2_payload(payment).authorization
    return PaymentId(f"x402:{network.chain_id}:permit2:{auth.from_address.lower()}:{auth.nonce}", float(auth.deadline))
