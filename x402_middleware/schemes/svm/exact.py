"""The Solana (SVM) ``exact`` scheme: a partially signed SPL ``TransferChecked`` transaction.

Spec: ``schemes/exact/scheme_exact_svm.md`` in coinbase/x402 (``../shared/docs/x402-protocol.md`` §7). The
requirement names the mint (``asset``), the recipient's wallet (``payTo``; tokens go to its associated token
account) and, in ``extra``, the facilitator's ``feePayer`` (copied from its ``/supported``) and an optional
``memo``. The payload is ``{"transaction": "<base64>"}``: a versioned transaction whose fee payer is
``extra.feePayer`` (its signature slot still empty) and that the payer has signed, with 3 to 6 instructions:
ComputeBudget SetComputeUnitLimit, SetComputeUnitPrice, SPL Token (or Token-2022) ``TransferChecked``, then
up to three Lighthouse or Memo instructions.

Local verification makes every check that needs no chain, in the official facilitator's order (x402 2.25.0
``mechanisms/svm/exact/facilitator.py``) and with its reason strings, plus the spec's MUSTs the Python SDK
skips (the fee payer in no instruction's accounts, an exact amount) and the payer's ed25519 signature, with
the TypeScript facilitator's reasons for those (``invalid_exact_svm_fee_payer_mismatch``,
``invalid_exact_svm_payload_signature_invalid``, ``invalid_exact_svm_payload_amount_mismatch``). Balances,
account existence and the blockhash's age are facts on chain: the facilitator simulates the transaction.

A payment's identity is its message (SHA-256): what every signer signs, so it fixes the final transaction
signature; it can land only while its blockhash is recent (150 slots, about a minute), so it is remembered
for :data:`BLOCKHASH_WINDOW` seconds, the spec's duplicate-settlement window.

    scheme = find_scheme("exact", "solana")
    result = scheme.verify(payment, requirement, now=int(time.time()))
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import ConfigurationError, MalformedPaymentError
from ...models import PaymentPayload, PaymentRequirements, VerifyResult
from ...networks import Asset, Network
from ...svm import (
    COMPUTE_BUDGET_PROGRAM,
    LIGHTHOUSE_PROGRAM,
    MEMO_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    Hash,
    Pubkey,
    Signature,
    VersionedTransaction,
    associated_token_address,
    decode_transaction,
    encode_transaction,
    is_address,
    keypair_from,
    message_bytes,
    message_digest,
)
from ...verify import UNSUPPORTED_SCHEME
from .. import PaymentId, register_scheme

__all__ = [
    "AMOUNT_MISMATCH",
    "BLOCKHASH_WINDOW",
    "COMPUTE_PRICE_TOO_HIGH",
    "DUPLICATE_SETTLEMENT",
    "FEE_PAYER_MISMATCH",
    "FEE_PAYER_TRANSFERRING",
    "INSTRUCTIONS_LENGTH",
    "INVALID_COMPUTE_LIMIT",
    "INVALID_COMPUTE_PRICE",
    "MAX_COMPUTE_UNIT_PRICE",
    "MEMO_COUNT",
    "MEMO_MISMATCH",
    "MINT_MISMATCH",
    "MISSING_FEE_PAYER",
    "NO_TRANSFER_INSTRUCTION",
    "RECIPIENT_MISMATCH",
    "SIGNATURE_INVALID",
    "TRANSACTION_DECODE_FAILED",
    "ExactSvmPayload",
    "ExactSvmScheme",
    "TransferChecked",
    "build_transfer",
    "fee_payers_of",
    "set_fee_payer",
    "svm_payload",
    "use_facilitator_fee_payers",
    "verify_exact_svm",
]

# Reason strings: [py] facilitator 2.25 (mechanisms/svm/constants.py) where it has one, else [ts] 2.27.
NETWORK_MISMATCH = "network_mismatch"
MISSING_FEE_PAYER = "invalid_exact_svm_payload_missing_fee_payer"
TRANSACTION_DECODE_FAILED = "invalid_exact_svm_payload_transaction_could_not_be_decoded"
FEE_PAYER_MISMATCH = "invalid_exact_svm_fee_payer_mismatch"  # [ts]
SIGNATURE_INVALID = "invalid_exact_svm_payload_signature_invalid"  # [ts]
INSTRUCTIONS_LENGTH = "invalid_exact_svm_payload_transaction_instructions_length"
INVALID_COMPUTE_LIMIT = "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
INVALID_COMPUTE_PRICE = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
COMPUTE_PRICE_TOO_HIGH = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high"
NO_TRANSFER_INSTRUCTION = "invalid_exact_svm_payload_no_transfer_instruction"
UNKNOWN_OPTIONAL_INSTRUCTION = (
    "invalid_exact_svm_payload_unknown_fourth_instruction",
    "invalid_exact_svm_payload_unknown_fifth_instruction",
    "invalid_exact_svm_payload_unknown_sixth_instruction",
)
MEMO_COUNT = "invalid_exact_svm_payload_memo_count"
MEMO_MISMATCH = "invalid_exact_svm_payload_memo_mismatch"
FEE_PAYER_TRANSFERRING = "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
MINT_MISMATCH = "invalid_exact_svm_payload_mint_mismatch"
RECIPIENT_MISMATCH = "invalid_exact_svm_payload_recipient_mismatch"
AMOUNT_MISMATCH = "invalid_exact_svm_payload_amount_mismatch"  # [ts]; the spec: "MUST equal ... exactly"
DUPLICATE_SETTLEMENT = "duplicate_settlement"

#: Highest compute-unit price accepted, in micro-lamports (the spec's reference bound: 5 lamports per CU).
MAX_COMPUTE_UNIT_PRICE = 5_000_000
#: Longest ``extra.memo`` (spec: 256 bytes of UTF-8).
MAX_MEMO_BYTES = 256
#: Seconds a payment stays identifiable: a blockhash is usable for 150 slots (60-90 s); the spec's window.
BLOCKHASH_WINDOW = 120.0
#: What the official clients ask for: enough for TransferChecked (~6,200 CU) and a 32-byte memo (~13,000 CU).
COMPUTE_UNIT_LIMIT = 20_000
COMPUTE_UNIT_PRICE = 1  # micro-lamports per CU: a negligible priority fee, as the official clients set
_TRANSFER_CHECKED = 12
_SET_LIMIT, _SET_PRICE = 2, 3


@dataclass(frozen=True, slots=True)
class TransferChecked:
    """The payment instruction: ``amount`` atomic units of ``mint`` from ``source`` to ``destination``."""

    program: Pubkey
    source: Pubkey
    mint: Pubkey
    destination: Pubkey
    authority: Pubkey
    amount: int
    decimals: int


@dataclass(frozen=True, slots=True)
class ExactSvmPayload:
    """A Solana payment as received: the base64 ``transaction`` and, when it decodes, the transaction itself.

    ``tx`` is ``None`` for bytes that are no transaction (verification then fails with the official
    ``..._could_not_be_decoded`` rather than the request being rejected as malformed JSON); ``transfer`` is
    its third instruction read as ``TransferChecked``, when it is one. ``payer`` is the transfer's
    authority (the wallet paying), ``""`` when unknown.
    """

    transaction: str
    tx: VersionedTransaction | None
    transfer: TransferChecked | None

    @property
    def payer(self) -> str:
        return str(self.transfer.authority) if self.transfer is not None else ""

    @property
    def amount(self) -> int | None:
        return self.transfer.amount if self.transfer is not None else None


def svm_payload(payment: PaymentPayload) -> ExactSvmPayload:
    """The Solana part of a payment parsed by this scheme (for facilitators settling it)."""
    data = payment.data
    if not isinstance(data, ExactSvmPayload):
        raise MalformedPaymentError("this is not a Solana 'exact' payment (payload.transaction is missing)")
    return data


def _read_transfer(tx: VersionedTransaction) -> TransferChecked | None:
    """The third instruction as ``TransferChecked`` (accounts: source, mint, destination, authority), if it is one."""
    message = tx.message
    keys = message.account_keys
    instructions = message.instructions
    if len(instructions) < 3:
        return None
    ix = instructions[2]
    program = keys[ix.program_id_index]
    data = bytes(ix.data)
    accounts = bytes(ix.accounts)
    if program not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) or len(data) != 10 or data[0] != _TRANSFER_CHECKED:
        return None
    if len(accounts) < 4:
        return None
    source, mint, destination, authority = (keys[i] for i in accounts[:4])
    return TransferChecked(program, source, mint, destination, authority, int.from_bytes(data[1:9], "little"), data[9])


_fee_payers: dict[str, str] = {}
_warned: set[str] = set()
logger = logging.getLogger("x402_middleware")


def set_fee_payer(network: str, fee_payer: str | None) -> None:
    """Offer ``fee_payer`` (a facilitator's, as its ``/supported`` lists it) in every Solana requirement on ``network``.

    ``None`` forgets it. A requirement's own ``extra={"feePayer": ...}`` (:class:`~x402_middleware.pricing.PaymentOption`)
    still wins::

        set_fee_payer("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "EwWqGE4ZFKLofuestmU4LDdK7XM1N4ALgdZccwYugwGd")
    """
    from ...networks import get_network

    caip2 = get_network(network).caip2
    if fee_payer is None:
        _fee_payers.pop(caip2, None)
        return
    if not is_address(fee_payer):
        raise ConfigurationError(f"fee payer {fee_payer!r} is not a base58 Solana address")
    _fee_payers[caip2] = fee_payer


def fee_payers_of(supported: Mapping[str, Any]) -> dict[str, str]:
    """The fee payer of each Solana network in a facilitator's ``/supported`` document (``kinds[].extra.feePayer``)."""
    from ...networks import find_network

    out: dict[str, str] = {}
    for kind in supported.get("kinds") or ():
        if not isinstance(kind, Mapping) or kind.get("scheme") != "exact":
            continue
        network = find_network(str(kind.get("network")))
        extra = kind.get("extra")
        if network is not None and network.namespace == "solana" and isinstance(extra, Mapping):
            fee_payer = extra.get("feePayer")
            if isinstance(fee_payer, str) and is_address(fee_payer):
                out.setdefault(network.caip2, fee_payer)
    return out


async def use_facilitator_fee_payers(facilitator: Any) -> dict[str, str]:
    """Ask ``facilitator`` (any :class:`~x402_middleware.facilitator.Facilitator`) for ``/supported`` and offer its
    Solana fee payers (:func:`set_fee_payer`), as the official SDK servers do at start-up; returns them::

        await use_facilitator_fee_payers(HTTPFacilitator("https://facilitator.example"))
    """
    found = fee_payers_of(await facilitator.supported())
    for network, fee_payer in found.items():
        set_fee_payer(network, fee_payer)
    return found


class ExactSvmScheme:
    """``exact`` on ``solana`` networks: an SPL Token / Token-2022 ``TransferChecked`` the facilitator co-signs."""

    scheme = "exact"
    namespace = "solana"
    address_format = "a base58 Solana address (32 bytes)"
    replay_reason = DUPLICATE_SETTLEMENT

    def valid_address(self, value: str) -> bool:
        return is_address(value)

    def requirement_extra(self, requirement: PaymentRequirements) -> dict[str, Any]:
        # extra.feePayer is the facilitator's (from its /supported): set per network with set_fee_payer() or
        # use_facilitator_fee_payers(), or per option with PaymentOption(extra={"feePayer": ...}).
        fee_payer = _fee_payers.get(requirement.network.caip2)
        if fee_payer is not None:
            return {"feePayer": fee_payer}
        if "feePayer" not in requirement.extra and requirement.network.caip2 not in _warned:
            _warned.add(requirement.network.caip2)
            logger.warning(
                "x402: Solana requirements on %s carry no extra.feePayer, and clients refuse to sign without one: "
                "call x402_middleware.schemes.svm.exact.set_fee_payer(network, <the facilitator's fee payer>)",
                requirement.network.caip2,
            )
        return {}

    def parse_requirement(
        self, network: Network, asset: str, pay_to: str, extra: Mapping[str, Any]
    ) -> tuple[Asset, str, dict[str, Any]]:
        if not is_address(asset) or not is_address(pay_to):
            raise MalformedPaymentError(
                "paymentRequirements asset (the mint) and payTo must be base58 Solana addresses"
            )
        fee_payer = extra.get("feePayer")
        if fee_payer is not None and not is_address(fee_payer):
            raise MalformedPaymentError("paymentRequirements extra.feePayer must be a base58 Solana address")
        memo = extra.get("memo")
        if memo is not None and (not isinstance(memo, str) or len(memo.encode()) > MAX_MEMO_BYTES):
            raise MalformedPaymentError(
                f"paymentRequirements extra.memo must be a string of at most {MAX_MEMO_BYTES} bytes"
            )
        known = network.asset
        if known is not None and known.address == asset:
            return known, pay_to, dict(extra)
        return Asset(asset, "", "", 6, ""), pay_to, dict(extra)

    def parse_payload(self, payload: Mapping[str, Any]) -> ExactSvmPayload:
        transaction = payload.get("transaction")
        if not isinstance(transaction, str) or not transaction:
            raise MalformedPaymentError(
                "payload.transaction must be the base64 of a partially signed Solana transaction"
            )
        try:
            tx = decode_transaction(transaction)
        except ValueError:
            return ExactSvmPayload(transaction, None, None)
        try:
            transfer = _read_transfer(tx)
        except IndexError:
            transfer = None
        return ExactSvmPayload(transaction, tx, transfer)

    def verify(self, payment: PaymentPayload, requirement: PaymentRequirements, now: int) -> VerifyResult:
        return verify_exact_svm(payment, requirement)

    def payment_id(self, payment: PaymentPayload, requirement: PaymentRequirements) -> PaymentId:
        data = svm_payload(payment)
        if data.tx is None:  # never verified; keyed by its text so that a replay is still recognised
            return PaymentId(f"x402:{requirement.network.caip2}:raw:{data.transaction}", time.time() + BLOCKHASH_WINDOW)
        return PaymentId(f"x402:{requirement.network.caip2}:{message_digest(data.tx)}", time.time() + BLOCKHASH_WINDOW)

    def sign(self, requirement: PaymentRequirements, key: bytes, now: int) -> dict[str, Any]:
        """Build and sign the transfer. ``requirement.extra`` must carry ``feePayer`` and ``recentBlockhash``
        (a client fetches the latest blockhash from an RPC node; :class:`~x402_middleware.X402Auth` does), and
        may carry ``tokenProgram`` (a Token-2022 mint's program; default SPL Token). ``key``: the payer's
        64-byte secret key (or 32-byte seed)."""
        return {"transaction": encode_transaction(build_transfer(requirement, key))}


def build_transfer(requirement: PaymentRequirements, key: bytes, *, memo: bytes | None = None) -> VersionedTransaction:
    """The payment transaction for ``requirement``, signed by the payer ``key`` (the fee payer's slot left empty).

    The same instructions as the official clients: compute limit, compute price, ``TransferChecked`` to
    ``ATA(payTo, mint)``, and a Memo (``extra.memo``, else 16 random bytes in hex, so that two payments of the
    same amount are two transactions).
    """
    from solders.instruction import AccountMeta, Instruction
    from solders.message import MessageV0

    extra = requirement.wire_extra()
    fee_payer, blockhash = extra.get("feePayer"), extra.get("recentBlockhash")
    if not isinstance(fee_payer, str) or not is_address(fee_payer):
        raise MalformedPaymentError(
            "this Solana requirement has no extra.feePayer: the server must copy its facilitator's"
        )
    if not isinstance(blockhash, str):
        raise MalformedPaymentError(
            "signing a Solana payment needs a recent blockhash (requirement extra.recentBlockhash)"
        )
    program = Pubkey.from_string(extra.get("tokenProgram") or str(TOKEN_PROGRAM))
    if program not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        raise MalformedPaymentError(f"token program {program} is neither SPL Token nor Token-2022")
    payer = keypair_from(key)
    mint = Pubkey.from_string(requirement.asset.address)
    seller_memo = extra.get("memo")
    if memo is None:
        memo = seller_memo.encode() if isinstance(seller_memo, str) and seller_memo else os.urandom(16).hex().encode()
    transfer = Instruction(
        program,
        bytes([_TRANSFER_CHECKED]) + requirement.amount.to_bytes(8, "little") + bytes([requirement.asset.decimals]),
        [
            AccountMeta(associated_token_address(payer.pubkey(), mint, program), is_signer=False, is_writable=True),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(associated_token_address(requirement.pay_to, mint, program), is_signer=False, is_writable=True),
            AccountMeta(payer.pubkey(), is_signer=True, is_writable=False),
        ],
    )
    limit = COMPUTE_UNIT_LIMIT if len(memo) <= 32 else 3 * COMPUTE_UNIT_LIMIT  # the memo program's cost grows with it
    instructions = [
        Instruction(COMPUTE_BUDGET_PROGRAM, bytes([_SET_LIMIT]) + limit.to_bytes(4, "little"), []),
        Instruction(COMPUTE_BUDGET_PROGRAM, bytes([_SET_PRICE]) + COMPUTE_UNIT_PRICE.to_bytes(8, "little"), []),
        transfer,
        Instruction(MEMO_PROGRAM, memo, []),
    ]
    message = MessageV0.try_compile(Pubkey.from_string(fee_payer), instructions, [], Hash.from_string(blockhash))
    unsigned = VersionedTransaction.populate(message, [Signature.default()] * message.header.num_required_signatures)
    signature = payer.sign_message(message_bytes(unsigned))
    signatures = [s if k != payer.pubkey() else signature for s, k in zip(unsigned.signatures, message.account_keys)]
    return VersionedTransaction.populate(message, signatures)


def verify_exact_svm(payment: PaymentPayload, requirement: PaymentRequirements) -> VerifyResult:
    """Every check of a Solana ``exact`` payment that needs no chain; the first failing one's reason.

    >>> from x402_middleware.models import PaymentRequirements, parse_payment_payload
    >>> from x402_middleware.networks import get_network
    >>> from x402_middleware.svm import Keypair
    >>> sol, payer, fee_payer = get_network("solana"), Keypair.from_seed(bytes(32)), Keypair.from_seed(bytes([1]) * 32)
    >>> extra = {"feePayer": str(fee_payer.pubkey()), "recentBlockhash": "11111111111111111111111111111111"}
    >>> req = PaymentRequirements(sol, sol.asset, 1000, "11111111111111111111111111111112", extra=extra)
    >>> signed = ExactSvmScheme().sign(req, bytes(payer), now=0)
    >>> payment = parse_payment_payload({"x402Version": 2, "accepted": req.to_v2(), "payload": signed})
    >>> verify_exact_svm(payment, req).is_valid
    True
    >>> import dataclasses
    >>> verify_exact_svm(payment, dataclasses.replace(req, amount=999)).invalid_reason
    'invalid_exact_svm_payload_amount_mismatch'
    """
    data = svm_payload(payment)
    payer = data.payer

    def fail(reason: str, message: str) -> VerifyResult:
        return VerifyResult(False, reason, message, payer or None)

    if payment.scheme != "exact" or requirement.scheme != "exact":
        return fail(UNSUPPORTED_SCHEME, f"scheme {payment.scheme!r} is not supported; pay with 'exact'")
    if payment.network not in (requirement.network.caip2, requirement.network.wire_v1):
        return fail(
            NETWORK_MISMATCH, f"payment is for network {payment.network!r}, expected {requirement.network.caip2!r}"
        )
    extra = requirement.wire_extra()
    fee_payer_text = extra.get("feePayer")
    if not isinstance(fee_payer_text, str) or not is_address(fee_payer_text):
        return fail(MISSING_FEE_PAYER, "the requirement has no extra.feePayer (the facilitator's, from its /supported)")
    fee_payer = Pubkey.from_string(fee_payer_text)
    tx = data.tx
    if tx is None:
        return fail(TRANSACTION_DECODE_FAILED, "payload.transaction is not a base64 Solana transaction")
    message = tx.message
    keys = message.account_keys
    if getattr(message, "address_table_lookups", None):
        return fail(TRANSACTION_DECODE_FAILED, "address lookup tables are not accepted in a payment transaction")
    if keys[0] != fee_payer:
        return fail(FEE_PAYER_MISMATCH, f"the transaction's fee payer is {keys[0]}, not extra.feePayer {fee_payer}")
    signed = message_bytes(tx)
    for index in range(1, message.header.num_required_signatures):
        if not tx.signatures[index].verify(keys[index], signed):
            return fail(SIGNATURE_INVALID, f"the signature of {keys[index]} does not verify over the transaction")
    instructions = message.instructions
    if not 3 <= len(instructions) <= 6:
        return fail(INSTRUCTIONS_LENGTH, f"a payment has 3 to 6 instructions, this one {len(instructions)}")
    limit, price = instructions[0], instructions[1]
    limit_data, price_data = bytes(limit.data), bytes(price.data)
    if keys[limit.program_id_index] != COMPUTE_BUDGET_PROGRAM or len(limit_data) != 5 or limit_data[0] != _SET_LIMIT:
        return fail(INVALID_COMPUTE_LIMIT, "the first instruction must be ComputeBudget SetComputeUnitLimit")
    if keys[price.program_id_index] != COMPUTE_BUDGET_PROGRAM or len(price_data) != 9 or price_data[0] != _SET_PRICE:
        return fail(INVALID_COMPUTE_PRICE, "the second instruction must be ComputeBudget SetComputeUnitPrice")
    micro_lamports = int.from_bytes(price_data[1:9], "little")
    if micro_lamports > MAX_COMPUTE_UNIT_PRICE:
        return fail(
            COMPUTE_PRICE_TOO_HIGH, f"compute unit price {micro_lamports} µlamports is over {MAX_COMPUTE_UNIT_PRICE}"
        )
    transfer = data.transfer
    if transfer is None:
        return fail(NO_TRANSFER_INSTRUCTION, "the third instruction must be SPL Token or Token-2022 TransferChecked")
    optional = instructions[3:]
    for index, ix in enumerate(optional):
        if keys[ix.program_id_index] not in (LIGHTHOUSE_PROGRAM, MEMO_PROGRAM):
            return fail(
                UNKNOWN_OPTIONAL_INSTRUCTION[index],
                f"instruction {index + 4} calls {keys[ix.program_id_index]}; only Lighthouse or Memo may follow the transfer",
            )
    memo = extra.get("memo")
    if isinstance(memo, str) and memo:
        memos = [bytes(ix.data) for ix in optional if keys[ix.program_id_index] == MEMO_PROGRAM]
        if len(memos) != 1:
            return fail(
                MEMO_COUNT, f"the requirement's extra.memo needs exactly one Memo instruction, not {len(memos)}"
            )
        if memos[0] != memo.encode():
            return fail(MEMO_MISMATCH, "the Memo instruction's data is not the requirement's extra.memo")
    # The fee payer signs only to pay fees: in no instruction may it be an account (a transfer authority, a
    # source, a writable account a program could debit), so co-signing can never move its own funds.
    if transfer.authority == fee_payer:
        return fail(FEE_PAYER_TRANSFERRING, "the fee payer is the transfer's authority")
    for ix in instructions:
        if any(keys[i] == fee_payer for i in bytes(ix.accounts)):
            return fail(FEE_PAYER_TRANSFERRING, "the fee payer appears in an instruction's accounts")
    if transfer.source == associated_token_address(fee_payer, transfer.mint, transfer.program):
        return fail(FEE_PAYER_TRANSFERRING, "the transfer's source is the fee payer's token account")
    if str(transfer.mint) != requirement.asset.address:
        return fail(MINT_MISMATCH, f"the transfer moves mint {transfer.mint}, expected {requirement.asset.address}")
    expected = associated_token_address(requirement.pay_to, transfer.mint, transfer.program)
    if transfer.destination != expected:
        return fail(
            RECIPIENT_MISMATCH,
            f"the transfer goes to {transfer.destination}, not {requirement.pay_to}'s token account {expected}",
        )
    if transfer.amount != requirement.amount:
        return fail(
            AMOUNT_MISMATCH, f"the transfer moves {transfer.amount}, the required amount is {requirement.amount}"
        )
    return VerifyResult(True, payer=payer)


register_scheme(ExactSvmScheme())
