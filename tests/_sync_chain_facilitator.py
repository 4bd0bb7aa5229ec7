"""A blocking facilitator double that really settles on the dev chain (tests only), for WSGI and sync Django.

The blocking twin of ``tests/_chain_facilitator.ChainFacilitator`` (it reuses that one's transaction code);
both stand in for the team's on-chain facilitator until ``x402_middleware/facilitator/onchain.py`` lands.
"""

from __future__ import annotations

from typing import Any

from tests._chain_facilitator import ChainFacilitator
from x402_middleware import SettleResult, VerifyResult
from x402_middleware.models import PaymentPayload, PaymentRequirements


class SyncChainFacilitator:
    """Settles EIP-3009 payments on ``rpc_url`` with gas from ``private_key``, blocking the calling thread."""

    def __init__(self, rpc_url: str, private_key: str, chain_id: int) -> None:
        self._chain = ChainFacilitator(rpc_url, private_key, chain_id)
        self.transactions = self._chain.transactions

    def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        return VerifyResult(False, "invalid_exact_evm_payload_signature", "EOA signatures only", payload.payer)

    def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        return self._chain._settle(payload, requirements)

    def supported(self) -> dict[str, Any]:
        network = f"eip155:{self._chain._chain_id}"
        return {"kinds": [{"x402Version": v, "scheme": "exact", "network": network} for v in (1, 2)]}
