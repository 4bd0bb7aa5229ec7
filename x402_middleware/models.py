"""Typed, immutable x402 messages and their strict wire (de)serialisation.

Field names follow the specs exactly (``../shared/docs/x402-protocol.md``):
v2 ``PaymentRequired``/``PaymentPayload``/``SettleResponse`` and their v1
twins. Amounts are ``int`` atomic units inside and decimal strings on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._exceptions import InvalidPaymentError, MalformedPaymentError
from .evm.eip3009 import Authorization, to_checksum_address
from .networks import Asset, Network, find_network

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}\Z")
_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}\Z")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+\Z")
_UINT = re.compile(r"^[0-9]{1,78}\Z")
#: Longest signature accepted (ERC-6492 wrapped contract-wallet signatures are long, but not this long).
MAX_SIGNATURE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """What is being paid for: the URL and a human description (x402 v2 ``ResourceInfo``)."""

    url: str
    description: str = ""
    mime_type: str = ""

    def to_wire(self) -> dict[str, str]:
        # Both SDKs always emit description/mimeType, "" when unset; strict v1 clients require them.
        return {"url": self.url, "description": self.description, "mimeType": self.mime_type}


@dataclass(frozen=True, slots=True)
class PaymentRequirements:
    """One way to pay for a request: scheme ``exact``, a network, an asset, an amount and a recipient.

    ``extra`` defaults to the asset's EIP-712 domain (``{"name", "version"}``).
    """

    network: Network
    asset: Asset
    amount: int
    pay_to: str
    max_timeout_seconds: int = 300
    scheme: str = "exact"
    extra: Mapping[str, Any] = field(default_factory=dict)
    resource: ResourceInfo | None = field(default=None, compare=False)

    def wire_extra(self) -> dict[str, Any]:
        return {**self.asset.extra, **self.extra}

    def to_v2(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "network": self.network.caip2,
            "amount": str(self.amount),
            "asset": self.asset.address,
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": self.wire_extra(),
        }

    def to_v1(self, resource: ResourceInfo | None = None) -> dict[str, Any]:
        res = resource or self.resource or ResourceInfo("")
        return {
            "scheme": self.scheme,
            "network": self.network.wire_v1,
            "maxAmountRequired": str(self.amount),
            "resource": res.url,
            "description": res.description,
            "mimeType": res.mime_type,
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "asset": self.asset.address,
            "outputSchema": None,
            "extra": self.wire_extra(),
        }

    def to_wire(self, x402_version: int) -> dict[str, Any]:
        return self.to_v1() if x402_version == 1 else self.to_v2()


def payment_required_v2(
    accepts: Sequence[PaymentRequirements],
    resource: ResourceInfo,
    error: str,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The v2 ``PaymentRequired`` object carried (base64) in the ``PAYMENT-REQUIRED`` header."""
    body: dict[str, Any] = {
        "x402Version": 2,
        "error": error,
        "resource": resource.to_wire(),
        "accepts": [r.to_v2() for r in accepts],
    }
    if extensions:
        body["extensions"] = dict(extensions)
    return body


def payment_required_v1(accepts: Sequence[PaymentRequirements], resource: ResourceInfo, error: str) -> dict[str, Any]:
    """The v1 ``PaymentRequirementsResponse`` sent as the 402 JSON body (for v1 clients)."""
    return {"x402Version": 1, "error": error, "accepts": [r.to_v1(resource) for r in accepts]}


@dataclass(frozen=True, slots=True)
class PaymentPayload:
    """A decoded, shape-checked payment from ``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT`` (v1).

    ``raw`` is the JSON exactly as received, forwarded verbatim to facilitators.
    Nothing here is verified yet: see :mod:`x402_middleware.verify`.
    """

    x402_version: int
    scheme: str
    network: str
    signature: bytes
    authorization: Authorization
    accepted: Mapping[str, Any] | None
    raw: Mapping[str, Any]

    @property
    def payer(self) -> str:
        return self.authorization.from_address


def parse_payment_payload(obj: Mapping[str, Any]) -> PaymentPayload:
    """Validate the shape of a decoded payment header; raise :class:`MalformedPaymentError` with the reason."""
    version = obj.get("x402Version")
    if type(version) is not int or version not in (1, 2):
        raise MalformedPaymentError(f"x402Version must be 1 or 2, got {version!r}")
    accepted: Mapping[str, Any] | None = None
    if version == 2:
        acc = obj.get("accepted")
        if not isinstance(acc, dict):
            raise MalformedPaymentError("a v2 payment must carry 'accepted': the payment requirement it pays")
        accepted = acc
        scheme, network = acc.get("scheme"), acc.get("network")
    else:
        scheme, network = obj.get("scheme"), obj.get("network")
    if not isinstance(scheme, str) or not isinstance(network, str) or not scheme or not network:
        raise MalformedPaymentError("payment 'scheme' and 'network' must be non-empty strings")
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise MalformedPaymentError("payment 'payload' must be an object")
    sig = payload.get("signature")
    if not isinstance(sig, str) or not _HEX.match(sig) or len(sig) > 2 + 2 * MAX_SIGNATURE_BYTES:
        raise MalformedPaymentError("payload.signature must be 0x-prefixed hex of at most 4096 bytes")
    auth = payload.get("authorization")
    if not isinstance(auth, dict):
        raise MalformedPaymentError(
            "payload.authorization must be an object (only EIP-3009 'exact' payments are accepted)"
        )
    return PaymentPayload(
        x402_version=version,
        scheme=scheme,
        network=network,
        signature=bytes.fromhex(sig[2:]),
        authorization=_parse_authorization(auth),
        accepted=accepted,
        raw=obj,
    )


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


def parse_requirements(obj: Any, x402_version: int) -> PaymentRequirements:
    """Parse a wire ``PaymentRequirements`` (v2 ``amount`` / v1 ``maxAmountRequired``), e.g. in a facilitator request.

    Raises :class:`MalformedPaymentError` for a bad shape and :class:`InvalidPaymentError`
    (``invalid_network``) for a network that is not registered.
    """
    if not isinstance(obj, Mapping):
        raise MalformedPaymentError("paymentRequirements must be an object")
    amount = obj.get("maxAmountRequired" if x402_version == 1 else "amount")
    network_name, asset, pay_to = obj.get("network"), obj.get("asset"), obj.get("payTo")
    timeout, extra, scheme = obj.get("maxTimeoutSeconds"), obj.get("extra") or {}, obj.get("scheme")
    if not isinstance(amount, str) or not _UINT.match(amount):
        raise MalformedPaymentError("paymentRequirements amount must be a decimal integer string")
    if (
        not isinstance(asset, str)
        or not _ADDRESS.match(asset)
        or not isinstance(pay_to, str)
        or not _ADDRESS.match(pay_to)
    ):
        raise MalformedPaymentError("paymentRequirements asset and payTo must be 0x-prefixed 20-byte addresses")
    if type(timeout) is not int or timeout <= 0 or not isinstance(extra, Mapping) or not isinstance(scheme, str):
        raise MalformedPaymentError(
            "paymentRequirements needs scheme, a positive integer maxTimeoutSeconds and an object extra"
        )
    if not isinstance(network_name, str):
        raise MalformedPaymentError("paymentRequirements network must be a string")
    network = find_network(network_name)
    if network is None:
        raise InvalidPaymentError("invalid_network", f"network {network_name!r} is not supported here")
    known = network.asset
    decimals = known.decimals if known is not None and known.address.lower() == asset.lower() else 6
    name, version = extra.get("name"), extra.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        if known is None or known.address.lower() != asset.lower():
            raise MalformedPaymentError("paymentRequirements extra must carry the token's EIP-712 name and version")
        name, version = known.name, known.version
    rest = {k: v for k, v in extra.items() if k not in ("name", "version")}
    return PaymentRequirements(
        network, Asset(asset, name, version, decimals), int(amount), pay_to, timeout, scheme, extra=rest
    )


def payload_network(payload: PaymentPayload) -> Network | None:
    """The registered network a payload names (v1 name or CAIP-2), if known."""
    return find_network(payload.network)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The answer of a verification: valid, or the first failing ``invalid_reason``."""

    is_valid: bool
    invalid_reason: str | None = None
    invalid_message: str | None = None
    payer: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> VerifyResult:
        return cls(
            bool(data.get("isValid")),
            _opt_str(data.get("invalidReason")),
            _opt_str(data.get("invalidMessage")),
            _opt_str(data.get("payer")),
        )

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"isValid": self.is_valid}
        if self.invalid_reason:
            out["invalidReason"] = self.invalid_reason
        if self.invalid_message:
            out["invalidMessage"] = self.invalid_message
        if self.payer:
            out["payer"] = self.payer
        return out


@dataclass(frozen=True, slots=True)
class SettleResult:
    """The answer of a settlement: the transaction hash, or ``error_reason``.

    ``error_reason == "settlement_pending"`` means a transaction was sent but not
    confirmed in time; ``transaction`` then holds its hash.
    """

    success: bool
    network: str
    transaction: str = ""
    payer: str | None = None
    error_reason: str | None = None
    error_message: str | None = None
    amount: int | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SettleResult:
        amount = data.get("amount")
        return cls(
            success=data.get("success") is True,
            network=str(data.get("network") or ""),
            transaction=str(data.get("transaction") or ""),
            payer=_opt_str(data.get("payer")),
            error_reason=_opt_str(data.get("errorReason")),
            error_message=_opt_str(data.get("errorMessage")),
            amount=int(amount) if isinstance(amount, str) and amount.isdigit() else None,
        )

    def to_wire(self, network: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "success": self.success,
            "transaction": self.transaction,
            "network": network or self.network,
        }
        if self.payer:
            out["payer"] = self.payer
        if self.error_reason:
            out["errorReason"] = self.error_reason
        if self.error_message:
            out["errorMessage"] = self.error_message
        if self.amount is not None:
            out["amount"] = str(self.amount)
        return out


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Payment:
    """A verified payment, given to the app as ``scope["x402.payment"]`` (ASGI) / ``environ["x402.payment"]`` (WSGI).

    Example, in a Starlette endpoint::

        payment = request.scope["x402.payment"]
        log.info("paid %s by %s", payment.amount, payment.payer)
    """

    payer: str
    amount: int
    requirements: PaymentRequirements
    payload: PaymentPayload

    @property
    def network(self) -> Network:
        return self.requirements.network

    @property
    def asset(self) -> Asset:
        return self.requirements.asset

    @property
    def x402_version(self) -> int:
        return self.payload.x402_version
