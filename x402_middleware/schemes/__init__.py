"""Payment schemes: what one x402 scheme on one chain family means, behind one small protocol.

The core (routes, prices, the paid-request flow, stores, the client) knows a payment only as a
:class:`PaymentScheme` found by its wire name and its network's CAIP-2 namespace. Each scheme lives in
its own module under a folder per chain family and registers itself::

    schemes/evm/exact.py     ("exact", "eip155")   EIP-3009 transferWithAuthorization, or Permit2
    schemes/evm/upto.py      ("upto", "eip155")    Permit2 for a maximum, settle the actual amount
    schemes/svm/exact.py     ("exact", "solana")   a partially signed Solana transaction (needs the svm extra)

A new scheme is a module with a class implementing :class:`PaymentScheme` and one line::

    register_scheme(MyScheme())

(the built-in ones are listed in ``_BUILTIN`` and imported the first time a scheme is looked up; those of a
chain family whose library is an optional extra, in ``_BY_NAMESPACE``, the first time that family is).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..models import PaymentPayload, PaymentRequirements, VerifyResult
    from ..networks import Asset, Network

__all__ = [
    "PaymentId",
    "PaymentScheme",
    "SchemePayload",
    "find_scheme",
    "missing_extra",
    "register_scheme",
    "schemes",
]


class SchemePayload(Protocol):
    """The scheme-specific part of a payment (the wire ``payload`` object), parsed and shape-checked."""

    @property
    def payer(self) -> str:
        """Who pays (an address on the payment's chain)."""
        ...

    @property
    def amount(self) -> int | None:
        """The amount the payment commits to, when the payload says it (v1 matching prefers it)."""
        ...


@dataclass(frozen=True, slots=True)
class PaymentId:
    """A payment's identity for at-most-once bookkeeping, and until when it could still be settled (unix time)."""

    key: str
    expires_at: float


class PaymentScheme(Protocol):
    """One x402 scheme (``scheme``) on one chain family (``namespace``, CAIP-2: ``eip155``, ``solana``).

    Server side: the scheme's part of a requirement's ``extra``, parsing requirements from the wire (for a
    facilitator), parsing and verifying a payment, and the payment's at-most-once identity. Client side:
    signing a payment for a requirement. Every method is pure (no I/O): what needs the chain is the
    facilitator's job, and :meth:`verify` returns ``None`` when only a facilitator can tell.
    """

    scheme: str
    namespace: str
    #: How an address on this chain family looks, for error messages ("a 0x-prefixed 20-byte hex address").
    address_format: str
    #: The reason a payment already settled is refused with (EVM: ``invalid_exact_evm_nonce_already_used``).
    replay_reason: str

    def valid_address(self, value: str) -> bool:
        """Whether ``value`` is an address on this chain family (a ``payTo``, an asset)."""
        ...

    def requirement_extra(self, requirement: PaymentRequirements) -> dict[str, Any]:
        """The scheme's own ``extra`` fields for a requirement (e.g. the token's EIP-712 domain)."""
        ...

    def parse_requirement(
        self, network: Network, asset: str, pay_to: str, extra: Mapping[str, Any]
    ) -> tuple[Asset, str, dict[str, Any]]:
        """A wire requirement's asset, recipient and remaining ``extra``; raises ``MalformedPaymentError``."""
        ...

    def parse_payload(self, payload: Mapping[str, Any]) -> SchemePayload:
        """Shape-check the wire ``payload`` object; raises ``MalformedPaymentError`` with the reason."""
        ...

    def verify(self, payment: PaymentPayload, requirement: PaymentRequirements, now: int) -> VerifyResult | None:
        """Verify locally in the official facilitator's order; ``None``: only the facilitator can tell."""
        ...

    def payment_id(self, payment: PaymentPayload, requirement: PaymentRequirements) -> PaymentId:
        """The identity under which the payment is served at most once."""
        ...

    def sign(self, requirement: PaymentRequirements, key: bytes, now: int) -> dict[str, Any]:
        """Client side: the wire ``payload`` object paying ``requirement`` with the private ``key``."""
        ...


_BUILTIN = ("x402_middleware.schemes.evm.exact", "x402_middleware.schemes.evm.upto")
# Built-in schemes of a chain family whose library is an optional extra: imported the first time a scheme of
# that namespace is looked up, so an EVM-only app never loads (or needs) solders.
_BY_NAMESPACE = {"solana": ("x402_middleware.schemes.svm.exact",)}
_registry: dict[tuple[str, str], PaymentScheme] = {}
_loaded = False
_loaded_namespaces: set[str] = set()
_missing: dict[str, str] = {}  # namespace -> why its built-in schemes are not available (a missing extra)
_lock = threading.Lock()


def register_scheme(scheme: PaymentScheme) -> PaymentScheme:
    """Make ``scheme`` the handler of ``(scheme.scheme, scheme.namespace)`` payments (replacing any other)."""
    _registry[(scheme.scheme, scheme.namespace)] = scheme
    return scheme


def _load_builtins() -> None:
    global _loaded
    with _lock:
        if not _loaded:
            for module in _BUILTIN:
                importlib.import_module(module)
            _loaded = True


def _load_namespace(namespace: str) -> None:
    with _lock:
        if namespace in _loaded_namespaces:
            return
        for module in _BY_NAMESPACE.get(namespace, ()):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                _missing[namespace] = str(exc)
        _loaded_namespaces.add(namespace)


def find_scheme(scheme: str, namespace: str) -> PaymentScheme | None:
    """The registered handler of ``scheme`` payments on ``namespace`` networks, or ``None``."""
    if not _loaded:
        _load_builtins()
    if namespace not in _loaded_namespaces:
        _load_namespace(namespace)
    return _registry.get((scheme, namespace))


def missing_extra(namespace: str) -> str | None:
    """Why the built-in schemes of ``namespace`` could not load (e.g. ``solders`` is not installed), or ``None``."""
    return _missing.get(namespace)


def schemes() -> list[PaymentScheme]:
    """Every registered scheme (the optional chain families' built-ins too, when their extra is installed)."""
    if not _loaded:
        _load_builtins()
    for namespace in _BY_NAMESPACE:
        if namespace not in _loaded_namespaces:
            _load_namespace(namespace)
    return list(_registry.values())
