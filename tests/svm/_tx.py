"""Build Solana payment transactions with solders directly (independently of the code under test), tampered at will."""

from __future__ import annotations

import base64
import os
from typing import Any

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
COMPUTE_BUDGET = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")


def transfer_tx(
    *,
    payer: Keypair,
    fee_payer: str,
    mint: str,
    pay_to: str,
    amount: int,
    blockhash: str,
    decimals: int = 6,
    destination: Pubkey | None = None,
    authority: Keypair | None = None,
    price: int = 1,
    memo: bytes | None = None,
    extra: list[Instruction] | None = None,
    signers: list[Keypair] | None = None,
) -> str:
    """A base64 payment transaction: compute limit, price, TransferChecked, memo (+ ``extra``), payer-signed."""
    owner = authority or payer
    mint_key = Pubkey.from_string(mint)
    source = get_associated_token_address(owner.pubkey(), mint_key)
    dest = destination or get_associated_token_address(Pubkey.from_string(pay_to), mint_key)
    transfer = Instruction(
        TOKEN,
        bytes([12]) + amount.to_bytes(8, "little") + bytes([decimals]),
        [
            AccountMeta(source, False, True),
            AccountMeta(mint_key, False, False),
            AccountMeta(dest, False, True),
            AccountMeta(owner.pubkey(), True, False),
        ],
    )
    ixs = [
        Instruction(COMPUTE_BUDGET, bytes([2]) + (20_000).to_bytes(4, "little"), []),
        Instruction(COMPUTE_BUDGET, bytes([3]) + price.to_bytes(8, "little"), []),
        transfer,
        Instruction(MEMO, memo if memo is not None else os.urandom(16).hex().encode(), []),
        *(extra or []),
    ]
    message = MessageV0.try_compile(Pubkey.from_string(fee_payer), ixs, [], Hash.from_string(blockhash))
    to_sign = b"\x80" + bytes(message)
    keys = message.account_keys
    by_key = {k.pubkey(): k for k in (signers or [owner])}
    sigs = [
        by_key[keys[i]].sign_message(to_sign) if keys[i] in by_key else Signature.default()
        for i in range(message.header.num_required_signatures)
    ]
    return base64.b64encode(bytes(VersionedTransaction.populate(message, sigs))).decode()


def requirement_wire(
    *, network: str, mint: str, pay_to: str, amount: int, fee_payer: str, **extra: Any
) -> dict[str, Any]:
    return {
        "scheme": "exact",
        "network": network,
        "amount": str(amount),
        "asset": mint,
        "payTo": pay_to,
        "maxTimeoutSeconds": 60,
        "extra": {"feePayer": fee_payer, **extra},
    }
