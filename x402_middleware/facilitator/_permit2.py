"""The on-chain half of Permit2 payments (``exact`` Permit2 variant and ``upto``) for :class:`OnChainFacilitator`.

``../shared/docs/x402-protocol.md`` §3.3-3.4, following x402 2.25.0 ``exact/permit2_utils.py`` and
``upto/permit2_utils.py``. After the local checks (:func:`~x402_middleware.schemes.evm.permit2.verify_permit2`)
and "the asset is a contract", verification reads the payer's ERC-20 allowance to Permit2 (a missing one is
fine when the payment carries a valid ``eip2612GasSponsoring`` permit) and balance, then simulates the proxy's
``settle`` with ``eth_call`` (the signature, the nonce bitmap and the transfer, as the chain will see them).
Allowance and balance are cached per (token, payer) for ``fact_ttl`` seconds and dropped when that payer
settles. Settlement calls the proxy (``settleWithPermit`` when the payment carries the EIP-2612 extension);
``upto`` settles ``requirements.amount`` (≤ the signed maximum; 0: success, no transaction).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from ..evm.abi import decode_output, encode_call, selector
from ..evm.jsonrpc import RPCError
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult
from ..schemes.evm.permit2 import (
    ALLOWANCE_REQUIRED,
    DEADLINE_MARGIN,
    EIP2612_GAS_SPONSORING,
    EXACT_PERMIT2_PROXY,
    INVALID_NONCE,
    PERMIT2_ADDRESS,
    UPTO_PERMIT2_PROXY,
    UPTO_SETTLEMENT_EXCEEDS_AMOUNT,
    Permit2Payload,
    permit2_payload,
)
from ._rpc import SIMULATION_BLOCK

if TYPE_CHECKING:
    from .onchain import OnChainFacilitator

__all__ = ["EIP2612_GAS_SPONSORING", "Permit2Settler"]

_PERMIT = "((address,uint256),uint256,uint256)"
_EIP2612 = "(uint256,uint256,bytes32,bytes32,uint8)"
EXACT_SETTLE = f"settle({_PERMIT},address,(address,uint256),bytes)"
EXACT_SETTLE_WITH_PERMIT = f"settleWithPermit({_EIP2612},{_PERMIT},address,(address,uint256),bytes)"
UPTO_SETTLE = f"settle({_PERMIT},uint256,address,(address,address,uint256),bytes)"
UPTO_SETTLE_WITH_PERMIT = f"settleWithPermit({_EIP2612},{_PERMIT},uint256,address,(address,address,uint256),bytes)"

EXACT_INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"
UPTO_INSUFFICIENT_BALANCE = "permit2_insufficient_balance"
BALANCE_CHECK_FAILED = "balance_check_failed"
EXACT_FAILED = "transaction_failed"
UPTO_FAILED = "invalid_upto_evm_transaction_failed"
EXACT_NONCE_USED = "invalid_exact_evm_nonce_already_used"

# Custom errors of Permit2 and the proxies -> the official facilitator's reasons (its _map_settle_error).
_ERRORS = {
    selector(sig).hex(): reason
    for sig, reason in (
        ("Permit2612AmountMismatch()", "permit2_2612_amount_mismatch"),
        ("InvalidAmount()", "invalid_permit2_amount"),
        ("InvalidAmount(uint256)", "invalid_permit2_amount"),
        ("AmountExceedsPermitted()", "upto_amount_exceeds_permitted"),
        ("UnauthorizedFacilitator()", "upto_unauthorized_facilitator"),
        ("InvalidDestination()", "invalid_permit2_destination"),
        ("InvalidOwner()", "invalid_permit2_owner"),
        ("PaymentTooEarly()", "permit2_payment_too_early"),
        ("InvalidSignature()", "invalid_permit2_signature"),
        ("InvalidSigner()", "invalid_permit2_signature"),
        ("InvalidSignatureLength()", "invalid_permit2_signature"),
        ("InvalidContractSignature()", "invalid_permit2_signature"),
        ("SignatureExpired(uint256)", "invalid_permit2_signature"),
        ("InvalidNonce()", INVALID_NONCE),
    )
}
_HEX_ADDRESS = re.compile(r"^0x[a-fA-F0-9]{40}\Z")
_DECIMAL = re.compile(r"^[0-9]{1,78}\Z")
_SIGNATURE = re.compile(r"^0x[a-fA-F0-9]{130}\Z")


def eip2612_permit(payment: PaymentPayload) -> dict[str, str] | None:
    """The ``eip2612GasSponsoring`` info of a v2 payment (``extensions``), or ``None`` when absent or malformed."""
    extensions = payment.raw.get("extensions")
    entry = extensions.get(EIP2612_GAS_SPONSORING) if isinstance(extensions, dict) else None
    info = entry.get("info") if isinstance(entry, dict) else None
    fields = ("from", "asset", "spender", "amount", "nonce", "deadline", "signature")
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in fields):
        return None
    return {k: str(info[k]) for k in fields}


def eip2612_refusal(info: dict[str, str], payer: str, token: str, now: int) -> str:
    """Why an EIP-2612 gas-sponsoring permit cannot approve Permit2 for this payment ("" if it can)."""
    if not (
        all(_HEX_ADDRESS.match(info[k]) for k in ("from", "asset", "spender"))
        and all(_DECIMAL.match(info[k]) for k in ("amount", "nonce", "deadline"))
        and _SIGNATURE.match(info["signature"])
    ):
        return "invalid_eip2612_extension_format"
    if info["from"].lower() != payer.lower():
        return "eip2612_from_mismatch"
    if info["asset"].lower() != token.lower():
        return "eip2612_asset_mismatch"
    if info["spender"].lower() != PERMIT2_ADDRESS.lower():
        return "eip2612_spender_not_permit2"
    if int(info["deadline"]) < now + DEADLINE_MARGIN:
        return "eip2612_deadline_expired"
    return ""


def settle_calldata(payment: PaymentPayload, amount: int, permit: dict[str, str] | None) -> tuple[str, bytes]:
    """The proxy and calldata settling ``payment`` for ``amount`` (``upto``; ``exact`` moves the signed amount)."""
    data = permit2_payload(payment)
    a = data.authorization
    permit_tuple = ((a.token, a.amount), a.nonce, a.deadline)
    head: tuple[Any, ...] = ()
    if permit is not None:
        sig = bytes.fromhex(permit["signature"][2:])
        head = ((int(permit["amount"]), int(permit["deadline"]), sig[:32], sig[32:64], sig[64]),)
    if a.facilitator is None:
        call = EXACT_SETTLE_WITH_PERMIT if permit is not None else EXACT_SETTLE
        args: tuple[Any, ...] = (*head, permit_tuple, a.from_address, (a.to, a.valid_after), data.signature)
        return EXACT_PERMIT2_PROXY, encode_call(call, *args)
    call = UPTO_SETTLE_WITH_PERMIT if permit is not None else UPTO_SETTLE
    witness = (a.to, a.facilitator, a.valid_after)
    return UPTO_PERMIT2_PROXY, encode_call(call, *head, permit_tuple, amount, a.from_address, witness, data.signature)


def _custom_error(exc: RPCError) -> str | None:
    raw = exc.data if isinstance(exc.data, str) else None
    if raw is None:  # anvil also names the selector in the message: "execution reverted: custom error 0x…"
        found = re.search(r"0x[0-9a-fA-F]{8}", exc.message)
        raw = found.group(0) if found else None
    return _ERRORS.get(raw[2:10].lower()) if raw and raw.startswith("0x") else None


class Permit2Settler:
    """Permit2 verification and settlement over an :class:`OnChainFacilitator`'s RPC client and keys."""

    def __init__(self, facilitator: OnChainFacilitator, *, fact_ttl: float = 1.0) -> None:
        self.facilitator = facilitator
        # (token, payer) -> (allowance to Permit2, balance): read once per burst of a payer's requests.
        self._facts: TTLCache[tuple[str, str], tuple[int | None, int | None]] = TTLCache(
            maxsize=100_000, ttl=fact_ttl, timer=time.monotonic
        )

    async def _read(self, token: str, signature: str, *args: Any) -> int | None:
        try:
            data = encode_call(signature, *args)
            raw = await self.facilitator.rpc("eth_call", {"to": token, "data": "0x" + data.hex()}, "latest")
            return int(decode_output("(uint256)", bytes.fromhex(raw[2:]))[0])
        except (RPCError, ValueError, IndexError):
            return None

    async def facts(self, token: str, payer: str) -> tuple[int | None, int | None]:
        """The payer's allowance to Permit2 and token balance (``None``: the read failed), cached briefly."""
        key = (token.lower(), payer.lower())
        cached = self._facts.get(key)
        if cached is not None:
            return cached
        allowance, balance = await asyncio.gather(
            self._read(token, "allowance(address,address)", payer, PERMIT2_ADDRESS),
            self._read(token, "balanceOf(address)", payer),
        )
        if allowance is not None and balance is not None:
            self._facts[key] = (allowance, balance)
        return allowance, balance

    async def _refusal(
        self, payment: PaymentPayload, requirements: PaymentRequirements, amount: int, *, fresh: bool = False
    ) -> str | None:
        """The allowance and balance checks, in the official order (``None``: both pass)."""
        data = permit2_payload(payment)
        payer, token, upto = data.payer, requirements.asset.address, payment.scheme == "upto"
        if fresh:
            self._facts.pop((token.lower(), payer.lower()), None)
        allowance, balance = await self.facts(token, payer)
        if allowance is None or allowance < amount:
            permit = eip2612_permit(payment)
            if permit is None:
                return ALLOWANCE_REQUIRED
            refusal = eip2612_refusal(permit, payer, token, int(time.time()))
            if refusal:
                return refusal
        if balance is None:
            return BALANCE_CHECK_FAILED
        if balance < amount:
            return UPTO_INSUFFICIENT_BALANCE if upto else EXACT_INSUFFICIENT_BALANCE
        return None

    async def verify(self, payment: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        """On-chain checks after the local ones: allowance (or a valid EIP-2612 permit), balance, simulation."""
        data = permit2_payload(payment)
        payer = data.payer
        refusal = await self._refusal(payment, requirements, requirements.amount)
        if refusal is not None:
            return VerifyResult(False, refusal, _explain(refusal, requirements), payer)
        target, calldata = settle_calldata(payment, requirements.amount, eip2612_permit(payment))
        sender = data.authorization.facilitator or self.facilitator.address
        try:
            await self.facilitator.rpc(
                "eth_call", {"from": sender, "to": target, "data": "0x" + calldata.hex()}, SIMULATION_BLOCK
            )
        except RPCError as exc:
            reason = await self._diagnose(payment, requirements, requirements.amount, exc)
            return VerifyResult(False, reason, exc.revert_reason or exc.message, payer)
        return VerifyResult(True, payer=payer)

    async def _diagnose(
        self, payment: PaymentPayload, requirements: PaymentRequirements, amount: int, exc: RPCError
    ) -> str:
        """Why the proxy call reverts: allowance/balance read afresh first, then the revert's own error."""
        refusal = await self._refusal(payment, requirements, amount, fresh=True)
        if refusal is not None:
            return refusal
        reason = _custom_error(exc)
        if reason == INVALID_NONCE and payment.scheme == "exact":
            return EXACT_NONCE_USED  # what the exact scheme calls a replay
        return reason or (UPTO_FAILED if payment.scheme == "upto" else EXACT_FAILED)

    async def settle(self, payment: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        """Settle through the proxy: ``exact`` for the signed amount, ``upto`` for ``requirements.amount``."""
        from .onchain import Settlement  # onchain imports this module

        fac, caip2 = self.facilitator, requirements.network.caip2
        data: Permit2Payload = permit2_payload(payment)
        a, upto = data.authorization, payment.scheme == "upto"
        amount = requirements.amount if upto else a.amount
        # upto: the payload is checked against the signed maximum; the settled amount is checked below.
        checked = replace(requirements, amount=a.amount) if upto else requirements
        refusal = fac.local(payment, checked)
        if refusal is not None:
            return SettleResult(False, caip2, "", data.payer, refusal.invalid_reason, refusal.invalid_message)
        if upto and amount == 0:
            return SettleResult(True, caip2, "", data.payer, amount=0)
        if upto and amount > a.amount:
            return SettleResult(
                False,
                caip2,
                "",
                data.payer,
                UPTO_SETTLEMENT_EXCEEDS_AMOUNT,
                f"settlement amount {amount} exceeds the signed maximum {a.amount}",
            )
        permit = eip2612_permit(payment)
        target, calldata = settle_calldata(payment, amount, permit)

        async def diagnose(exc: RPCError) -> str:
            return await self._diagnose(payment, requirements, amount, exc)

        plan = Settlement(
            key=(fac.chain_id, "permit2", a.from_address.lower(), a.nonce),
            valid_until=a.deadline,
            target=target,
            data=calldata,
            gas_key=None if len(data.signature) != 65 else f"{target.lower()}:{calldata[:4].hex()}",
            signer=a.facilitator,
            transfer=(a.token, a.from_address, a.to, amount),
            replay_reason=INVALID_NONCE if upto else EXACT_NONCE_USED,
            diagnose=diagnose,
        )
        try:
            return await fac.settle_once(plan, payment, requirements)
        finally:
            self._facts.pop((a.token.lower(), a.from_address.lower()), None)


def _explain(reason: str, requirements: PaymentRequirements) -> str:
    if reason == ALLOWANCE_REQUIRED:
        return (
            f"the payer has not approved Permit2 ({PERMIT2_ADDRESS}) for {requirements.asset.address}: approve it "
            "once, or add the eip2612GasSponsoring extension with a signed EIP-2612 permit"
        )
    if reason == BALANCE_CHECK_FAILED:
        return "the payer's token balance could not be read from the chain"
    if reason in (EXACT_INSUFFICIENT_BALANCE, UPTO_INSUFFICIENT_BALANCE):
        return f"the payer holds less than {requirements.amount} of {requirements.asset.address}"
    return reason
