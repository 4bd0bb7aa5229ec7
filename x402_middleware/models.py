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
from .networks import Asset, Network, find_network
from .schemes import find_scheme

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_UINT = re.compile(r"^[0-9]{1,78}\Z")


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
    """One way to pay for a request: a scheme (``exact``), a network, an asset, an amount and a recipient.

    On the wire, ``extra`` is the scheme's own fields (for EVM ``exact``, the token's EIP-712 domain
    ``{"name", "version"}``) updated with this requirement's ``extra``.
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
        scheme = find_scheme(self.scheme, self.network.namespace)
        base = scheme.requirement_extra(self) if scheme is not None else {}
        return {**base, **self.extra} if self.extra else base

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
            # No "outputSchema": null: x402-fetch 1.x's zod schema takes it absent or an object, never null.
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
    """The v1 ``PaymentRequirementsResponse`` sent as the 402 JSON body (for v1 clients).

    Shaped for the strict legacy clients: ``x402-fetch`` 1.x runs zod's ``PaymentRequirementsSchema.parse`` on every
    entry, where ``outputSchema`` and ``extra`` may be absent or an object but never ``null`` (one ``null`` fails the
    whole 402 with a ZodError), and ``description`` and ``mimeType`` must be strings; PyPI ``x402`` 1.0.0 needs a
    string ``error``. So no entry carries ``"outputSchema": null``, and only networks with a legacy v1 name
    (``base``, ``base-sepolia``, ...) are listed: both clients reject the whole 402 over one CAIP-2 network name
    they do not know. For the same reason a body never mixes chain families: PyPI ``x402`` 1.0.0 knows no
    ``solana`` and rejects a 402 listing it, so Solana options (``solana``, ``solana-devnet``) are listed only
    when no EVM option is. v2 clients read the ``PAYMENT-REQUIRED`` header, which lists every option.
    """
    named = [r for r in accepts if r.network.v1_name]
    evm = [r for r in named if r.network.namespace == "eip155"]
    entries = [r.to_v1(resource) for r in (evm or named)]
    return {"x402Version": 1, "error": error, "accepts": entries}


@dataclass(frozen=True, slots=True)
class PaymentPayload:
    """A decoded, shape-checked payment from ``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT`` (v1).

    ``data`` is the scheme's parsed ``payload`` object (see :mod:`x402_middleware.schemes`), ``None`` when no
    registered scheme handles this scheme on this network (such a payment matches no requirement).
    ``raw`` is the JSON exactly as received, forwarded verbatim to facilitators. Nothing here is
    verified yet: the scheme's ``verify`` does that.
    """

    x402_version: int
    scheme: str
    network: str
    accepted: Mapping[str, Any] | None
    raw: Mapping[str, Any]
    data: Any = None

    @property
    def payer(self) -> str:
        return str(self.data.payer) if self.data is not None else ""


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
    known = find_network(network)
    namespace = known.namespace if known is not None else network.partition(":")[0]
    handler = find_scheme(scheme, namespace)
    data = handler.parse_payload(payload) if handler is not None else None
    return PaymentPayload(version, scheme, network, accepted, obj, data)


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
    if not isinstance(asset, str) or not asset or not isinstance(pay_to, str) or not pay_to:
        raise MalformedPaymentError("paymentRequirements asset and payTo must be non-empty strings")
    if type(timeout) is not int or timeout <= 0 or not isinstance(extra, Mapping) or not isinstance(scheme, str):
        raise MalformedPaymentError(
            "paymentRequirements needs scheme, a positive integer maxTimeoutSeconds and an object extra"
        )
    if not isinstance(network_name, str):
        raise MalformedPaymentError("paymentRequirements network must be a string")
    network = find_network(network_name)
    if network is None:
        raise InvalidPaymentError("invalid_network", f"network {network_name!r} is not supported here")
    handler = find_scheme(scheme, network.namespace)
    if handler is None:
        raise InvalidPaymentError("unsupported_scheme", f"scheme {scheme!r} is not supported on {network.caip2}")
    parsed_asset, pay_to, rest = handler.parse_requirement(network, asset, pay_to, extra)
    return PaymentRequirements(network, parsed_asset, int(amount), pay_to, timeout, scheme, extra=rest)


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
