"""The blocking twin of ``tests/_facilitator_double.FakeFacilitator`` for WSGI and sync Django (tests only)."""

from __future__ import annotations

import threading
import time
from typing import Any

from x402_middleware import FacilitatorError, SettleResult, VerifyResult
from x402_middleware.models import PaymentPayload, PaymentRequirements


class SyncFakeFacilitator:
    """Settles every payment with a fake transaction hash unless told otherwise; records calls (thread-safe)."""

    def __init__(
        self,
        *,
        settle_result: SettleResult | None = None,
        raise_on_settle: bool = False,
        settle_delay: float = 0.0,
        verify_valid: bool = True,
    ) -> None:
        self.settle_result = settle_result
        self.raise_on_settle = raise_on_settle
        self.settle_delay = settle_delay
        self.verify_valid = verify_valid
        self.settled: list[tuple[PaymentPayload, PaymentRequirements]] = []
        self.verified: list[tuple[PaymentPayload, PaymentRequirements]] = []
        self.events: list[str] | None = None  # when a list, "settle" is appended at each settlement
        self._lock = threading.Lock()

    def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        with self._lock:
            self.verified.append((payload, requirements))
        if self.verify_valid:
            return VerifyResult(True, payer=payload.payer)
        return VerifyResult(False, "invalid_exact_evm_payload_signature", "bad", payload.payer)

    def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        if self.settle_delay:
            time.sleep(self.settle_delay)
        if self.events is not None:
            self.events.append("settle")
        if self.raise_on_settle:
            raise FacilitatorError("facilitator unreachable (test double)")
        with self._lock:
            self.settled.append((payload, requirements))
        if self.settle_result is not None:
            return self.settle_result
        return SettleResult(
            True, requirements.network.caip2, "0x" + payload.data.authorization.nonce.hex(), payload.payer
        )

    def supported(self) -> dict[str, Any]:
        return {
            "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}],
            "extensions": [],
            "signers": {},
        }
