"""A tiny facilitator for tests that really settles on a dev chain: one ``transferWithAuthorization`` per payment.

Stand-in for the team's on-chain facilitator (``x402_middleware/facilitator/onchain.py``) until it lands.
Verification stays with the middleware (local EIP-712 check); settlement sends the transaction from a
gas-paying key over the dev chain's JSON-RPC, in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from x402_middleware import SettleResult, VerifyResult
from x402_middleware.devchain import RPCError, TransactionFailed, encode_call
from x402_middleware.devchain._rpc import SyncRPC
from x402_middleware.models import PaymentPayload, PaymentRequirements

TWA_VRS = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
# FiatTokenV2 revert text -> the official facilitator's reason codes (x402-protocol.md §3.2).
_REASONS = {
    "authorization is used or canceled": "invalid_exact_evm_nonce_already_used",
    "authorization is expired": "invalid_exact_evm_payload_authorization_valid_before",
    "authorization is not yet valid": "invalid_exact_evm_payload_authorization_valid_after",
    "invalid signature": "invalid_exact_evm_payload_signature",
    "transfer amount exceeds balance": "invalid_exact_evm_insufficient_balance",
}


class ChainFacilitator:
    """Settles EIP-3009 payments on ``rpc_url`` with gas from ``private_key``; records the transaction hashes."""

    def __init__(self, rpc_url: str, private_key: str, chain_id: int) -> None:
        self._rpc = SyncRPC(rpc_url)
        self._key = private_key
        self._chain_id = chain_id
        self._lock = threading.Lock()  # one sender key: serialise nonces
        self.transactions: list[str] = []

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        return VerifyResult(False, "invalid_exact_evm_payload_signature", "EOA signatures only", payload.payer)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        return await asyncio.to_thread(self._settle, payload, requirements)

    def _settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        a, sig = payload.authorization, payload.signature
        data = encode_call(TWA_VRS, a.from_address, a.to, a.value, a.valid_after, a.valid_before, a.nonce,
                           sig[64] if sig[64] >= 27 else sig[64] + 27, sig[:32], sig[32:64])
        network = requirements.network.caip2
        try:
            with self._lock:
                receipt = self._rpc.send_transaction(self._key, self._chain_id, requirements.asset.address, data)
        except (RPCError, TransactionFailed) as exc:
            text = (exc.revert_reason if isinstance(exc, RPCError) else None) or str(exc)
            reason = next((code for needle, code in _REASONS.items() if needle in text), "transaction_failed")
            return SettleResult(False, network, "", a.from_address, reason, text)
        tx = str(receipt["transactionHash"])
        self.transactions.append(tx)
        return SettleResult(True, network, tx, a.from_address)

    async def supported(self) -> dict[str, Any]:
        return {"kinds": [{"x402Version": v, "scheme": "exact", "network": f"eip155:{self._chain_id}"} for v in (1, 2)]}
