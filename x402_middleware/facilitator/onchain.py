"""A self-hosted facilitator that verifies and settles EIP-3009 and Permit2 payments on an EVM chain.

No web3.py: batched JSON-RPC over the package's keep-alive HTTP client (:mod:`._rpc`), calldata with eth-abi,
EIP-1559 transactions signed over coincurve (:mod:`x402_middleware.evm`). ``verify`` runs the local checks plus an ``eth_call`` simulation of
``transferWithAuthorization`` and, when that reverts, the official diagnostic
ladder (``../shared/docs/x402-protocol.md`` §3.2). ``settle`` re-runs the local
checks, sends the transfer from one of a pool of facilitator keys, waits for the
receipt and checks the ``Transfer`` log. Permit2 payments (``exact`` with ``assetTransferMethod: "permit2"``,
and ``upto``, settled for the actual amount) go through the x402 Permit2 proxies (:mod:`._permit2`).

It settles only the tokens it is configured for (``assets``, default: the network's USDC), so nobody
can make it pay gas for a contract of their choosing, and it sends at most one transaction per payment
(chain, token, payer, EIP-3009 nonce): a second ``settle`` of the same payment, concurrent or later,
follows the first one's transaction instead of paying gas for a transfer that can only revert.

    facilitator = OnChainFacilitator("http://127.0.0.1:8545", ["0x<gas-paying key>"], network="eip155:8453")
    app = PaymentMiddleware(app, routes=..., pay_to=..., network="eip155:8453", facilitator=facilitator)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import TLRUCache
from coincurve import PrivateKey
from eth_account import Account

from .._exceptions import ConfigurationError, FacilitatorError
from ..evm.abi import decode_output, encode_call
from ..evm.eip3009 import keccak
from ..evm.jsonrpc import RPCError
from ..evm.transactions import build_transaction, sign_transaction
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult
from ..networks import Network, get_network, is_hex_address
from ..schemes.evm.exact import evm_payload, verify_exact_evm
from ..schemes.evm.permit2 import Permit2Payload, verify_permit2
from . import _permit2
from ._rpc import SIMULATION_BLOCK, AsyncRPC

TWA_VRS = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
TWA_BYTES = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
logger = logging.getLogger("x402_middleware.facilitator")
_TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()

NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used"
INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"
TRANSACTION_FAILED = "invalid_exact_evm_transaction_failed"
SIMULATION_FAILED = "invalid_exact_evm_transaction_simulation_failed"
SETTLEMENT_PENDING = "settlement_pending"
ASSET_NOT_ALLOWED = "asset_not_allowed"
# How long a payment is remembered after its validBefore: the chain refuses it from validBefore on
# (block.timestamp < validBefore), and block timestamps may trail the wall clock a little.
_EXPIRY_MARGIN = 120.0
_GAS_HEADROOM = 25_000

# FiatTokenV2 revert strings -> x402 reason codes (the official facilitators match the same substrings).
_REVERTS = (
    ("authorization is used or canceled", NONCE_ALREADY_USED),
    ("authorization is expired", "invalid_exact_evm_payload_authorization_valid_before"),
    ("authorization is not yet valid", "invalid_exact_evm_payload_authorization_valid_after"),
    ("exceeds balance", INSUFFICIENT_BALANCE),
    ("invalid signature", "invalid_exact_evm_payload_signature"),
)


def _reason_of(revert: str | None, default: str) -> str:
    for needle, reason in _REVERTS:
        if revert and needle in revert:
            return reason
    return default


def transfer_calldata(payload: PaymentPayload) -> bytes:
    """``transferWithAuthorization`` calldata: the (v, r, s) overload for 65-byte signatures, else ``bytes``."""
    data = evm_payload(payload)
    a, sig = data.authorization, data.signature
    head = (a.from_address, a.to, a.value, a.valid_after, a.valid_before, a.nonce)
    if len(sig) == 65:
        v = sig[64] + 27 if sig[64] < 27 else sig[64]
        return encode_call(TWA_VRS, *head, v, sig[:32], sig[32:64])
    return encode_call(TWA_BYTES, *head, sig)


class _MaybeSent(FacilitatorError):
    """``eth_sendRawTransaction`` got no answer: the transaction ``tx_hash`` may or may not be on its way."""

    def __init__(self, tx_hash: str, raw: bytes, message: str) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.raw = raw


class _Payment:
    """What was done for one payment: at most one transaction (``tx_hash``), and its final outcome once known.

    ``lock`` is held only while deciding whether to send and sending; waiting for the receipt is not
    under it, so duplicates follow the same transaction side by side.
    """

    __slots__ = ("expires", "lock", "outcome", "raw", "tx_hash")

    def __init__(self, valid_before: int) -> None:
        self.expires = float(valid_before) + _EXPIRY_MARGIN
        self.lock = asyncio.Lock()
        self.tx_hash: str | None = None
        self.raw = b""  # the signed transaction, to broadcast again if the node lost it
        self.outcome: SettleResult | None = None  # the success (reported once) or the mined failure


def _payment_expiry(_key: object, payment: _Payment, _now: float) -> float:
    return payment.expires


@dataclass(frozen=True, slots=True)
class Settlement:
    """One transaction that settles a payment, as the scheme's settle path plans it.

    ``key`` identifies the payment (at most one transaction per key, remembered until ``valid_until``);
    ``target``/``data`` is the call; ``gas_key`` names a reusable gas limit (``None``: estimate every time);
    ``signer`` is the address that must send it (``None``: any key); ``transfer`` is the ERC-20 ``Transfer``
    (token, from, to, amount) the receipt must show; ``replay_reason`` what a second settle of a settled
    payment gets; ``diagnose`` maps a failed preflight to a reason.
    """

    key: tuple[Any, ...]
    valid_until: int
    target: str
    data: bytes
    gas_key: str | None
    signer: str | None
    transfer: tuple[str, str, str, int]
    replay_reason: str
    diagnose: Callable[[RPCError], Awaitable[str]]


class _Signer:
    """One gas-paying key with its own transaction-nonce counter (sends are serialised per key)."""

    def __init__(self, key: str | bytes) -> None:
        self.account = Account.from_key(key)
        self.address: str = self.account.address
        self.key = PrivateKey(bytes(self.account.key))  # public key derived once, not per transaction
        self.lock = asyncio.Lock()
        self.nonce: int | None = None
        self.in_flight = 0


class OnChainFacilitator:
    """Verify and settle payments yourself, paying gas from a pool of keys (no third party).

    Several keys let settlements proceed in parallel without colliding on
    transaction nonces; each key's nonce is tracked locally and resynchronised
    from the node after a failed send. A receipt that does not arrive within
    ``receipt_timeout`` gives ``settlement_pending`` with the transaction hash; a transaction the
    node has lost meanwhile is sent again (the same bytes) every ``rebroadcast_after`` seconds.

    Only payments in ``assets`` (token addresses; default: the network's default asset) are verified
    or settled, others are refused with ``asset_not_allowed`` before any RPC call; ``any_asset=True``
    accepts any EIP-3009 token (a public facilitator then pays gas for whatever contract a caller names).

    Permit2 payments work for any ERC-20 in ``assets`` the payer approved Permit2 for (or with the
    ``eip2612GasSponsoring`` extension). An ``upto`` payment names the key that may settle it: :attr:`address`
    (what ``/supported`` lists as ``extra.facilitatorAddress``) or any other of these keys. Verifying one reads the
    payer's allowance and balance, reused for ``fact_ttl`` seconds per payer (dropped when that payer settles)::

        await facilitator.settle(payload, dataclasses.replace(requirements, amount=actual))  # upto: actual <= maximum

    Each payment it broadcast is remembered until its ``validBefore`` has passed (at most
    ``max_tracked_payments``, least recently used forgotten first), and no second transaction is ever
    sent for it. Another ``settle`` of the same payment waits for that transaction (up to
    ``receipt_timeout``): the first call to see it mined gets ``success`` with its hash, every other
    one ``invalid_exact_evm_nonce_already_used`` (what the chain would say), one made while it is
    still unmined ``settlement_pending`` with the same hash, and a reverted one
    ``invalid_exact_evm_transaction_failed``::

        facilitator = OnChainFacilitator(rpc_url, [key], network="eip155:8453", receipt_timeout=10)
        first = await facilitator.settle(payload, requirements)   # settlement_pending, transaction=0xabc…
        again = await facilitator.settle(payload, requirements)   # success, transaction=0xabc… (no new tx)
    """

    def __init__(
        self,
        rpc_url: str,
        signer_keys: Sequence[str | bytes],
        *,
        network: str | Network,
        client: httpx.AsyncClient | None = None,
        receipt_timeout: float = 30.0,
        rebroadcast_after: float = 2.0,
        gas_limit: int | None = None,
        assets: Iterable[str] | None = None,
        any_asset: bool = False,
        max_tracked_payments: int = 100_000,
        fact_ttl: float = 1.0,
    ) -> None:
        if not signer_keys:
            raise ConfigurationError("OnChainFacilitator needs at least one signer key to pay gas with")
        self.network = network if isinstance(network, Network) else get_network(network)
        if self.network.chain_id is None:
            raise ConfigurationError(f"OnChainFacilitator settles on EVM (eip155) networks, not {self.network.caip2}")
        self.chain_id: int = self.network.chain_id
        if assets is None:
            assets = [self.network.asset.address] if self.network.asset is not None else []
        self.assets = frozenset(a.lower() for a in assets)
        for address in self.assets:
            if not is_hex_address(address):
                raise ConfigurationError(f"asset {address!r} is not a 0x-prefixed 20-byte hex token address")
        self.any_asset = any_asset
        if not self.assets and not any_asset:
            raise ConfigurationError(
                f"{self.network.caip2} has no default asset: pass OnChainFacilitator(assets=['0x<token>']) "
                "with the tokens it may settle, or any_asset=True"
            )
        self._payments: TLRUCache[tuple[Any, ...], _Payment] = TLRUCache(
            maxsize=max_tracked_payments, ttu=_payment_expiry, timer=time.time
        )
        self.rpc = AsyncRPC(rpc_url, client=client)
        self.signers = [_Signer(k) for k in signer_keys]
        self.receipt_timeout = receipt_timeout
        self.rebroadcast_after = rebroadcast_after
        self.gas_limit = gas_limit
        self._checked_chain = False
        self._fees: tuple[float, int, int] | None = None
        self._deployed: set[str] = set()
        self._gas: dict[str, int] = {}  # gas_key (asset, or proxy + selector) -> reusable gas limit
        self.permit2 = _permit2.Permit2Settler(self, fact_ttl=fact_ttl)

    # -- Facilitator protocol ------------------------------------------------------------------
    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        """Local checks, then an ``eth_call`` simulation of the transfer with the diagnostic ladder."""
        refusal = self.local(payload, requirements)
        if refusal is not None:
            return refusal
        await self._check_chain()
        asset = requirements.asset.address
        if not await self.is_contract(asset):
            return VerifyResult(False, "asset_not_deployed_contract", f"no contract at {asset}", payload.payer)
        if isinstance(payload.data, Permit2Payload):
            return await self.permit2.verify(payload, requirements)
        call = {"from": self.signers[0].address, "to": asset, "data": "0x" + transfer_calldata(payload).hex()}
        try:
            await self.rpc("eth_call", call, SIMULATION_BLOCK)
        except RPCError as exc:
            reason = await self._diagnose(payload, requirements, exc.revert_reason)
            return VerifyResult(False, reason, exc.revert_reason or exc.message, payload.payer)
        return VerifyResult(True, payer=payload.payer)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        """Send the settlement (once per payment), wait for the receipt, check the ``Transfer`` log.

        EIP-3009: ``transferWithAuthorization``. Permit2 (``exact`` and ``upto``): the proxy's ``settle`` (or
        ``settleWithPermit`` with the EIP-2612 gas-sponsoring extension); ``upto`` settles
        ``requirements.amount``, at most the signed maximum, and 0 succeeds without a transaction.
        """
        if isinstance(payload.data, Permit2Payload):
            return await self.permit2.settle(payload, requirements)
        caip2 = requirements.network.caip2
        refusal = self.local(payload, requirements)
        if refusal is not None:
            return SettleResult(False, caip2, "", payload.payer, refusal.invalid_reason, refusal.invalid_message)
        auth = evm_payload(payload).authorization
        asset = requirements.asset.address

        async def diagnose(exc: RPCError) -> str:
            return _reason_of(exc.revert_reason, TRANSACTION_FAILED)

        plan = Settlement(
            key=(self.chain_id, asset.lower(), auth.from_address.lower(), auth.nonce),
            valid_until=auth.valid_before,
            target=asset,
            data=transfer_calldata(payload),
            gas_key=asset.lower() if len(evm_payload(payload).signature) == 65 else None,
            signer=None,
            transfer=(asset, auth.from_address, auth.to, auth.value),
            replay_reason=NONCE_ALREADY_USED,
            diagnose=diagnose,
        )
        return await self.settle_once(plan, payload, requirements)

    async def settle_once(
        self, plan: Settlement, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResult:
        """Send ``plan``'s transaction unless one was sent for its payment already, and report the outcome."""
        caip2 = requirements.network.caip2
        payment = self._payments.get(plan.key)
        if payment is None:
            payment = self._payments[plan.key] = _Payment(plan.valid_until)
        deadline = time.monotonic() + self.receipt_timeout
        async with payment.lock:  # concurrent duplicates wait here until the first has sent (or refused)
            if payment.outcome is None and payment.tx_hash is None:
                try:
                    sent = await self._broadcast(plan, payload, requirements)
                except _MaybeSent as exc:
                    sent = (exc.tx_hash, exc.raw)
                if isinstance(sent, SettleResult):  # refused before sending: nothing to remember
                    return sent
                payment.tx_hash, payment.raw = sent
        if payment.outcome is not None:
            return self._again(payment.outcome, caip2, payload, plan.replay_reason)
        tx_hash = payment.tx_hash
        assert tx_hash is not None
        receipt = await self._receipt(tx_hash, deadline, payment.raw)
        if payment.outcome is not None:  # a duplicate saw the receipt first and reported it
            return self._again(payment.outcome, caip2, payload, plan.replay_reason)
        if receipt is None:
            return SettleResult(
                False,
                caip2,
                tx_hash,
                payload.payer,
                SETTLEMENT_PENDING,
                f"transaction {tx_hash} was sent but not mined within {self.receipt_timeout} s; "
                "settle the same payment again to follow it (no second transaction is sent)",
            )
        if int(receipt["status"], 16) != 1:
            if plan.gas_key is not None:  # in case the cached limit ran out of gas: estimate afresh
                self._gas.pop(plan.gas_key, None)
            payment.outcome = SettleResult(
                False, caip2, tx_hash, payload.payer, TRANSACTION_FAILED, f"the transfer {tx_hash} reverted"
            )
        elif not _has_transfer(receipt, *plan.transfer):
            payment.outcome = SettleResult(
                False,
                caip2,
                tx_hash,
                payload.payer,
                "invalid_exact_evm_transfer_event_mismatch",
                "the transaction did not emit the expected Transfer event",
            )
        else:
            payment.outcome = SettleResult(True, caip2, tx_hash, payload.payer, amount=plan.transfer[3])
        return payment.outcome

    @staticmethod
    def _again(outcome: SettleResult, caip2: str, payload: PaymentPayload, replay_reason: str) -> SettleResult:
        """The answer to a settle of a payment whose transaction's outcome was already reported."""
        if not outcome.success:
            return outcome  # a mined failure stays one; no second transaction is sent
        # A success is reported once: any other settle of it is a replay, as the chain would say.
        return SettleResult(
            False,
            caip2,
            outcome.transaction,  # which transaction used it, for a resource server following up its own
            payload.payer,
            replay_reason,
            f"this authorization was already settled in transaction {outcome.transaction}",
        )

    async def _broadcast(
        self, plan: Settlement, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> tuple[str, bytes] | SettleResult:
        """Simulate and send the transaction: its hash and bytes, or the refusal when it would revert."""
        caip2 = requirements.network.caip2
        await self._check_chain()
        signers = [s for s in self.signers if plan.signer is None or s.address.lower() == plan.signer.lower()]
        if not signers:
            return SettleResult(
                False, caip2, "", payload.payer, "upto_unauthorized_facilitator", f"no signer key for {plan.signer}"
            )
        signer = min(signers, key=lambda s: s.in_flight)
        signer.in_flight += 1
        try:
            try:
                gas = await self._preflight(signer, plan.target, plan.data, plan.gas_key)
            except RPCError as exc:  # the transaction would revert: nothing is sent
                reason = await plan.diagnose(exc)
                return SettleResult(False, caip2, "", payload.payer, reason, exc.revert_reason or exc.message)
            return await self._send(signer, plan.target, plan.data, gas)
        finally:
            signer.in_flight -= 1

    async def is_contract(self, address: str) -> bool:
        """Whether ``address`` has code (remembered once it has: code does not go away in practice)."""
        if address.lower() in self._deployed:
            return True
        if await self.rpc("eth_getCode", address, "latest") in ("0x", "0x0", None):
            return False
        self._deployed.add(address.lower())
        return True

    async def supported(self) -> dict[str, Any]:
        """``exact`` (EIP-3009 and Permit2) and ``upto``, whose ``extra.facilitatorAddress`` is the key that settles
        it (an ``upto`` payer names it in the signed witness, and only that key may submit the transfer)."""
        caip2 = self.network.caip2
        kinds: list[dict[str, Any]] = [
            {"x402Version": 2, "scheme": "exact", "network": caip2},
            {"x402Version": 2, "scheme": "upto", "network": caip2, "extra": {"facilitatorAddress": self.address}},
        ]
        if self.network.v1_name:
            kinds.append({"x402Version": 1, "scheme": "exact", "network": self.network.v1_name})
        return {
            "kinds": kinds,
            "extensions": [_permit2.EIP2612_GAS_SPONSORING],
            "signers": {"eip155:*": [s.address for s in self.signers]},
        }

    @property
    def address(self) -> str:
        """The address ``upto`` payments name as their facilitator (the first signer key's)."""
        return self.signers[0].address

    async def aclose(self) -> None:
        await self.rpc.aclose()

    # -- internals -------------------------------------------------------------------------------
    def local(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult | None:
        if requirements.network.chain_id != self.chain_id:
            return VerifyResult(
                False,
                "network_mismatch",
                f"this facilitator settles on {self.network.caip2}, not {requirements.network.caip2}",
                payload.payer,
            )
        asset = requirements.asset.address
        if not self.any_asset and asset.lower() not in self.assets:
            return VerifyResult(
                False,
                ASSET_NOT_ALLOWED,
                f"this facilitator settles only {', '.join(sorted(self.assets))} on {self.network.caip2}, not "
                f"{asset}; add it with OnChainFacilitator(assets=[...]) (server: --allow-asset {asset})",
                payload.payer,
            )
        if isinstance(payload.data, Permit2Payload):
            result = verify_permit2(
                payload,
                requirements,
                int(time.time()),
                upto=payload.scheme == "upto",
                facilitators=[s.address for s in self.signers],  # any key of ours may settle (as the official)
            )
        else:
            result = verify_exact_evm(payload, requirements)
        if result is not None and not result.is_valid:
            return result
        return None  # valid, or a contract-wallet signature left to the chain (EIP-1271)

    async def _check_chain(self) -> None:
        if self._checked_chain:
            return
        chain_id = int(await self.rpc("eth_chainId"), 16)
        if chain_id != self.chain_id:
            raise FacilitatorError(
                f"the RPC node is on chain {chain_id} but this facilitator is configured for "
                f"{self.network.caip2}; point rpc_url at the right chain"
            )
        self._checked_chain = True

    async def _fee(self) -> tuple[int, int]:
        now = time.monotonic()
        if self._fees is None or now - self._fees[0] > 2.0:  # the node's fee changes per block; 2 s is plenty
            gas_price = int(await self.rpc("eth_gasPrice"), 16)
            priority = min(10**9, gas_price)
            self._fees = (now, 2 * gas_price + priority, priority)
        return self._fees[1], self._fees[2]

    async def _preflight(self, signer: _Signer, target: str, data: bytes, gas_key: str | None) -> int:
        """Simulate the transfer (raises :class:`RPCError` if it would revert) and return its gas limit.

        ``eth_estimateGas`` runs the EVM several times (a binary search), ``eth_call`` once: the gas of an
        EOA-signed ``transferWithAuthorization`` depends only on which storage slots are still zero, so the
        first estimate per token plus headroom serves every later one, which then needs only ``eth_call``.
        Contract-wallet signatures (EIP-1271) run arbitrary code and are always estimated.
        """
        call = {"from": signer.address, "to": target, "data": "0x" + data.hex()}
        known = self.gas_limit or (self._gas.get(gas_key) if gas_key is not None else None)
        if known is not None:
            await self.rpc("eth_call", call, SIMULATION_BLOCK)
            return known
        # +20% and a fresh-slot SSTORE (20,000 instead of 2,900 gas; EIP-2200/2929) for a recipient or
        # payer whose balance is zero when the estimate is reused. Unused gas is not charged.
        gas = int(await self.rpc("eth_estimateGas", call), 16) * 6 // 5 + _GAS_HEADROOM
        if gas_key is not None:
            self._gas[gas_key] = gas
        return gas

    async def _send(self, signer: _Signer, to: str, data: bytes, gas: int) -> tuple[str, bytes]:
        max_fee, priority = await self._fee()
        async with signer.lock:  # one nonce at a time per key; the receipt is awaited outside the lock
            for attempt in (1, 2):
                if signer.nonce is None:
                    signer.nonce = int(await self.rpc("eth_getTransactionCount", signer.address, "pending"), 16)
                tx = build_transaction(
                    chain_id=self.chain_id,
                    nonce=signer.nonce,
                    to=to,
                    data=data,
                    gas=gas,
                    max_fee_per_gas=max_fee,
                    max_priority_fee_per_gas=priority,
                )
                signed, local_hash = sign_transaction(signer.key, tx)
                try:
                    tx_hash = str(await self.rpc("eth_sendRawTransaction", "0x" + signed.hex()))
                except RPCError as exc:
                    signer.nonce = None  # resynchronise from the node, then try once more
                    if attempt == 2 or "nonce" not in exc.message.lower():
                        raise FacilitatorError(f"sending the settlement transaction failed: {exc.message}") from exc
                    continue
                except FacilitatorError as exc:
                    # No answer: the node may have taken the transaction anyway. Following its hash
                    # (known before sending) is safe; sending another one for the payment is not.
                    signer.nonce = None
                    raise _MaybeSent(local_hash, signed, str(exc)) from exc
                signer.nonce += 1
                return tx_hash, signed
        raise AssertionError("unreachable")  # pragma: no cover

    async def _receipt(self, tx_hash: str, deadline: float, raw: bytes) -> dict[str, Any] | None:
        """The receipt, or None when it is not there by ``deadline`` (``time.monotonic()``).

        Every ``rebroadcast_after`` seconds without a receipt, a transaction the node no longer knows
        (dropped from its pool, or an unanswered send that never arrived) is sent again, byte for byte:
        the same hash and nonce, so it can still be mined at most once. Without that, a lost
        transaction leaves a gap in its signer's nonces, and every later settlement from that key
        waits behind it until ``receipt_timeout``.
        """
        delay = 0.002
        check_at = time.monotonic() + self.rebroadcast_after
        while True:
            receipt = await self.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return dict(receipt)
            now = time.monotonic()
            if raw and now >= check_at:
                check_at = now + self.rebroadcast_after
                await self._rebroadcast(tx_hash, raw)
            left = deadline - now
            if left <= 0:
                return None
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.25)

    async def _rebroadcast(self, tx_hash: str, raw: bytes) -> None:
        if await self.rpc("eth_getTransactionByHash", tx_hash) is not None:
            return  # still pending at the node: only waiting helps
        logger.warning("settlement transaction %s is unknown to the node: sending it again", tx_hash)
        try:
            await self.rpc("eth_sendRawTransaction", "0x" + raw.hex())
        except RPCError:
            pass  # "already known", or its nonce got used (mined meanwhile): the next receipt poll tells

    async def _diagnose(self, payload: PaymentPayload, requirements: PaymentRequirements, revert: str | None) -> str:
        """The official diagnostic ladder after a failed simulation (first failing check wins)."""
        asset, auth = requirements.asset.address, evm_payload(payload).authorization

        async def call(signature: str, types: str, *args: Any) -> Any:
            try:
                raw = await self.rpc(
                    "eth_call", {"to": asset, "data": "0x" + encode_call(signature, *args).hex()}, "latest"
                )
                return decode_output(types, bytes.fromhex(raw[2:]))[0]
            except (RPCError, ValueError, IndexError):
                return None

        used, name, version, balance = await asyncio.gather(
            call("authorizationState(address,bytes32)", "(bool)", auth.from_address, auth.nonce),
            call("name()", "(string)"),
            call("version()", "(string)"),
            call("balanceOf(address)", "(uint256)", auth.from_address),
        )
        if used is None:
            return "invalid_exact_evm_eip3009_not_supported"
        if used:
            return NONCE_ALREADY_USED
        extra = requirements.wire_extra()
        if name is not None and name != extra.get("name"):
            return "invalid_exact_evm_token_name_mismatch"
        if version is not None and version != extra.get("version"):
            return "invalid_exact_evm_token_version_mismatch"
        if balance is not None and balance < auth.value:
            return INSUFFICIENT_BALANCE
        return _reason_of(revert, SIMULATION_FAILED)


def _has_transfer(receipt: dict[str, Any], asset: str, sender: str, recipient: str, amount: int) -> bool:
    want = (
        _TRANSFER_TOPIC,
        "0x" + sender[2:].lower().rjust(64, "0"),
        "0x" + recipient[2:].lower().rjust(64, "0"),
    )
    for log in receipt.get("logs", []):
        topics = [t.lower() for t in log.get("topics", [])]
        if (
            log.get("address", "").lower() == asset.lower()
            and tuple(topics[:3]) == want
            and int(log.get("data", "0x0"), 16) == amount
        ):
            return True
    return False
