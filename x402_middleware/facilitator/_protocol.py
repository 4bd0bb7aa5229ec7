"""The facilitator plug-in interface: verify, settle, supported."""

from __future__ import annotations

from typing import Any, Protocol

from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult


class Facilitator(Protocol):
    """Verifies and settles payments (x402 facilitator API: ``/verify``, ``/settle``, ``/supported``).

    Implementations: :class:`~x402_middleware.facilitator.HTTPFacilitator` (a
    remote service such as x402.org or CDP) and the self-hosted on-chain one.
    A facilitator that cannot answer raises :class:`~x402_middleware.FacilitatorError`;
    a payment it refuses is a normal result with ``is_valid``/``success`` false.

    A minimal implementation::

        class AlwaysValid:
            async def verify(self, payload, requirements):
                return VerifyResult(True, payer=payload.payer)
            async def settle(self, payload, requirements):
                return SettleResult(True, requirements.network.caip2, "0x" + "00" * 32, payload.payer)
            async def supported(self):
                return {"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:8453"}]}
    """

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        """Check a payment without moving money."""
        ...

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        """Move the money; return the transaction hash or the reason it failed."""
        ...

    async def supported(self) -> dict[str, Any]:
        """The ``/supported`` document: payment kinds, extensions, signers."""
        ...


class SyncFacilitator(Protocol):
    """The blocking twin of :class:`Facilitator`, for WSGI apps (no event loop per request)."""

    def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult: ...

    def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult: ...

    def supported(self) -> dict[str, Any]: ...
