"""A self-hosted facilitator for Solana ``exact`` payments: co-sign as fee payer, simulate, send, confirm.

Plain Solana JSON-RPC (``simulateTransaction``, ``sendTransaction``, ``getSignatureStatuses``,
``getGenesisHash``) over the package's batching keep-alive client (:mod:`._rpc`); keys, transactions and
signatures from ``solders`` (the ``svm`` extra). ``verify`` runs the scheme's local checks
(:mod:`x402_middleware.schemes.svm.exact`), then checks the fee payer is one of its own and simulates the
co-signed transaction; ``settle`` does the same, sends it and waits until it is confirmed.

Only the configured mints are settled (default: the network's USDC), so nobody can make it pay fees for a
token program call of their choosing. At most one transaction is sent per payment (its message; the spec's
duplicate-settlement mitigation): a second ``settle`` of the same payment, concurrent or later, never sends
again; it follows the first one's transaction, and only one caller is ever told ``success``, every other one
``duplicate_settlement``::

    facilitator = SolanaFacilitator(rpc_url, ["<base58 fee-payer secret key>"], network="solana")
    app = PaymentMiddleware(app, routes=..., pay_to="<wallet>", network="solana", facilitator=facilitator)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
from cachetools import TLRUCache

from .._exceptions import ConfigurationError, FacilitatorError
from ..evm.jsonrpc import RPCError
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult
from ..networks import Network, get_network
from ..schemes.svm.exact import (
    BLOCKHASH_WINDOW,
    DUPLICATE_SETTLEMENT,
    svm_payload,
    verify_exact_svm,
)
from ..svm import Keypair, co_sign, encode_transaction, is_address, keypair_from, message_digest
from ._rpc import AsyncRPC

__all__ = ["FEE_PAYER_NOT_MANAGED", "SIMULATION_FAILED", "TRANSACTION_FAILED", "SolanaFacilitator"]

logger = logging.getLogger("x402_middleware.facilitator")

# [py] 2.25 reason strings (mechanisms/svm/constants.py).
FEE_PAYER_NOT_MANAGED = "fee_payer_not_managed_by_facilitator"
SIMULATION_FAILED = "transaction_simulation_failed"
TRANSACTION_FAILED = "transaction_failed"
SETTLEMENT_PENDING = "settlement_pending"
ASSET_NOT_ALLOWED = "asset_not_allowed"
_CONFIRMED = ("confirmed", "finalized")


class _Payment:
    """What was done for one payment (one message): at most one transaction, and whether its success was told."""

    __slots__ = ("expires", "lock", "outcome", "signature")

    def __init__(self) -> None:
        self.expires = time.time() + BLOCKHASH_WINDOW
        self.lock = asyncio.Lock()
        self.signature: str | None = None
        self.outcome: SettleResult | None = None  # the confirmed success (told once) or the on-chain failure


def _payment_expiry(_key: object, payment: _Payment, _now: float) -> float:
    return payment.expires


class SolanaFacilitator:
    """Verify and settle Solana ``exact`` payments yourself, paying the fees from your own fee-payer keys.

    ``fee_payer_keys``: base58 64-byte secret keys (or raw 64 bytes, or ``solders`` keypairs); each must hold
    SOL for fees. ``/supported`` offers the first as ``extra.feePayer`` and lists all under ``signers``; a
    payment naming any of them is co-signed by that one. ``assets``: the mints it settles (default: the
    network's USDC); ``any_asset=True`` settles any mint. A transaction not confirmed within
    ``confirm_timeout`` seconds gives ``settlement_pending`` with its signature; settling the same payment
    again follows that transaction (nothing is sent twice).
    """

    def __init__(
        self,
        rpc_url: str,
        fee_payer_keys: Sequence[str | bytes | Keypair],
        *,
        network: str | Network,
        client: httpx.AsyncClient | None = None,
        confirm_timeout: float = 30.0,
        assets: Iterable[str] | None = None,
        any_asset: bool = False,
        max_tracked_payments: int = 100_000,
    ) -> None:
        if not fee_payer_keys:
            raise ConfigurationError("SolanaFacilitator needs at least one fee-payer key (it pays the fees)")
        self.network = network if isinstance(network, Network) else get_network(network)
        if self.network.namespace != "solana":
            raise ConfigurationError(f"SolanaFacilitator settles on solana networks, not {self.network.caip2}")
        try:
            self.fee_payers = [keypair_from(k) for k in fee_payer_keys]
        except ValueError as exc:
            raise ConfigurationError(f"fee-payer key: {exc}") from None
        self._by_address = {str(k.pubkey()): k for k in self.fee_payers}
        if assets is None:
            assets = [self.network.asset.address] if self.network.asset is not None else []
        self.assets = frozenset(assets)
        for mint in self.assets:
            if not is_address(mint):
                raise ConfigurationError(f"asset {mint!r} is not a base58 Solana mint address")
        self.any_asset = any_asset
        if not self.assets and not any_asset:
            raise ConfigurationError(f"{self.network.caip2} has no default mint: pass assets=[...] or any_asset=True")
        self.rpc = AsyncRPC(rpc_url, client=client)
        self.confirm_timeout = confirm_timeout
        self._payments: TLRUCache[str, _Payment] = TLRUCache(
            maxsize=max_tracked_payments, ttu=_payment_expiry, timer=time.time
        )
        self._checked_network = False

    @property
    def fee_payer_addresses(self) -> list[str]:
        return list(self._by_address)

    # -- Facilitator protocol --------------------------------------------------------------------
    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        """The local checks, then a simulation of the co-signed transaction (signatures verified)."""
        checked = self._local(payload, requirements)
        if isinstance(checked, VerifyResult):
            return checked
        error = await self._simulate(checked)
        if error is not None:
            return VerifyResult(False, SIMULATION_FAILED, error, payload.payer)
        return VerifyResult(True, payer=payload.payer)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        """Co-sign, simulate and send the transaction (once per payment), then wait for its confirmation."""
        caip2 = requirements.network.caip2
        checked = self._local(payload, requirements)
        if isinstance(checked, VerifyResult):
            return SettleResult(False, caip2, "", payload.payer, checked.invalid_reason, checked.invalid_message)
        key = message_digest(checked)
        payment = self._payments.get(key)
        if payment is None:
            payment = self._payments[key] = _Payment()
        deadline = time.monotonic() + self.confirm_timeout
        async with payment.lock:  # a concurrent duplicate waits here until the first has sent (or refused)
            if payment.outcome is not None:
                return self._again(payment.outcome, caip2, payload)
            if payment.signature is None:
                sent = await self._send(checked, caip2, payload)
                if isinstance(sent, SettleResult):  # refused before sending: nothing to remember
                    self._payments.pop(key, None)
                    return sent
                payment.signature = sent
        signature = payment.signature
        status = await self._confirm(signature, deadline)
        if payment.outcome is not None:  # a duplicate saw the confirmation first and told it
            return self._again(payment.outcome, caip2, payload)
        if status is None:
            return SettleResult(
                False,
                caip2,
                signature,
                payload.payer,
                SETTLEMENT_PENDING,
                f"transaction {signature} was sent but not confirmed within {self.confirm_timeout} s; settle the "
                "same payment again to follow it (no second transaction is sent)",
            )
        if status.get("err") is not None:
            payment.outcome = SettleResult(
                False, caip2, signature, payload.payer, TRANSACTION_FAILED, f"the transaction failed: {status['err']}"
            )
        else:
            payment.outcome = SettleResult(True, caip2, signature, payload.payer, amount=requirements.amount)
        return payment.outcome

    async def supported(self) -> dict[str, Any]:
        extra = {"feePayer": self.fee_payer_addresses[0]}
        kinds: list[dict[str, Any]] = [
            {"x402Version": 2, "scheme": "exact", "network": self.network.caip2, "extra": extra}
        ]
        if self.network.v1_name:
            kinds.append({"x402Version": 1, "scheme": "exact", "network": self.network.v1_name, "extra": extra})
        return {"kinds": kinds, "extensions": [], "signers": {"solana:*": self.fee_payer_addresses}}

    async def aclose(self) -> None:
        await self.rpc.aclose()

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _again(outcome: SettleResult, caip2: str, payload: PaymentPayload) -> SettleResult:
        if not outcome.success:
            return outcome  # a failed transaction stays failed; nothing is sent again
        return SettleResult(
            False,
            caip2,
            outcome.transaction,
            payload.payer,
            DUPLICATE_SETTLEMENT,
            f"this payment was already settled in transaction {outcome.transaction}",
        )

    def _local(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Any:
        """The co-signed transaction, or the :class:`VerifyResult` refusing the payment."""
        if requirements.network.caip2 != self.network.caip2:
            return VerifyResult(
                False,
                "network_mismatch",
                f"this facilitator settles on {self.network.caip2}, not {requirements.network.caip2}",
                payload.payer,
            )
        mint = requirements.asset.address
        if not self.any_asset and mint not in self.assets:
            return VerifyResult(
                False,
                ASSET_NOT_ALLOWED,
                f"this facilitator settles only {', '.join(sorted(self.assets))} on {self.network.caip2}, not {mint}",
                payload.payer,
            )
        result = verify_exact_svm(payload, requirements)
        if not result.is_valid:
            return result
        fee_payer = requirements.wire_extra().get("feePayer")
        keypair = self._by_address.get(str(fee_payer))
        if keypair is None:
            return VerifyResult(
                False,
                FEE_PAYER_NOT_MANAGED,
                f"extra.feePayer {fee_payer} is not one of this facilitator's ({', '.join(self._by_address)})",
                payload.payer,
            )
        tx = svm_payload(payload).tx
        assert tx is not None  # verified above
        return co_sign(tx, keypair)

    async def _check_network(self) -> None:
        if self._checked_network:
            return
        genesis = str(await self.rpc("getGenesisHash"))
        reference = self.network.caip2.partition(":")[2]
        if not genesis.startswith(reference):
            raise FacilitatorError(
                f"the RPC node's genesis hash {genesis} is not {self.network.caip2}'s; point rpc_url at that cluster"
            )
        self._checked_network = True

    async def _simulate(self, tx: Any) -> str | None:
        """``None`` when the transaction would succeed, else what failed (the error and the last program logs)."""
        await self._check_network()
        config = {"encoding": "base64", "sigVerify": True, "commitment": "confirmed"}
        try:
            result = await self.rpc("simulateTransaction", encode_transaction(tx), config)
        except RPCError as exc:
            return f"simulation refused: {exc.message}"
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict):
            raise FacilitatorError(f"simulateTransaction answered {result!r}")
        if value.get("err") is None:
            return None
        logs = [line for line in value.get("logs") or () if "failed" in line or "Error" in line or "error" in line]
        return f"{value['err']}" + (f": {'; '.join(logs[-3:])}" if logs else "")

    async def _send(self, tx: Any, caip2: str, payload: PaymentPayload) -> str | SettleResult:
        """Simulate, then send: the transaction signature, or the refusal when it would fail."""
        error = await self._simulate(tx)
        if error is not None:
            return SettleResult(False, caip2, "", payload.payer, SIMULATION_FAILED, error)
        signature = str(tx.signatures[0])
        try:
            # Just simulated: no second preflight. maxRetries 0 is not asked: the node's own rebroadcast helps.
            sent = await self.rpc(
                "sendTransaction", encode_transaction(tx), {"encoding": "base64", "skipPreflight": True}
            )
        except RPCError as exc:
            return SettleResult(False, caip2, "", payload.payer, TRANSACTION_FAILED, exc.message)
        except FacilitatorError as exc:
            # No answer: the node may have the transaction. Its signature is known before sending, so following
            # it is safe; sending again is not needed (the same bytes would be deduplicated anyway).
            logger.warning("sendTransaction got no answer (%s); following %s", exc, signature)
            return signature
        if sent != signature:
            raise FacilitatorError(f"sendTransaction returned signature {sent}, expected {signature}")
        return signature

    async def _confirm(self, signature: str, deadline: float) -> dict[str, Any] | None:
        """The transaction's status once confirmed (``err`` None or the failure), or ``None`` by ``deadline``."""
        delay = 0.002
        while True:
            result = await self.rpc("getSignatureStatuses", [signature], {"searchTransactionHistory": True})
            statuses = result.get("value") if isinstance(result, dict) else None
            status = statuses[0] if isinstance(statuses, list) and statuses else None
            if isinstance(status, dict) and (
                status.get("err") is not None or status.get("confirmationStatus") in _CONFIRMED
            ):
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.25)
