"""Solana primitives the SVM ``exact`` scheme, the facilitator and the client share (needs ``solders``).

``solders`` (``pip install "x402_middleware[svm]"``) brings Solana's own Rust types: keys, versioned
transactions, program-derived addresses, ed25519 signatures. What is here is the x402 view of them
(``../shared/docs/x402-protocol.md`` §7, spec ``schemes/exact/scheme_exact_svm.md``): program ids, the
payment transaction's wire form (base64 of a partially signed versioned transaction), its message bytes
(what every signer signs) and the associated token account (ATA) a payment must go to::

    tx = decode_transaction(payload["transaction"])
    ata = associated_token_address(pay_to, mint)          # where the tokens must arrive
    signed = co_sign(tx, fee_payer)                       # the facilitator's signature in slot 0
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

try:
    from solders.hash import Hash
    from solders.keypair import Keypair
    from solders.message import Message, MessageV0
    from solders.pubkey import Pubkey
    from solders.signature import Signature
    from solders.token.associated import get_associated_token_address
    from solders.transaction import VersionedTransaction
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'Solana payments need solders: pip install "x402_middleware[svm]" (it ships Solana\'s own types)'
    ) from exc

__all__ = [
    "COMPUTE_BUDGET_PROGRAM",
    "LIGHTHOUSE_PROGRAM",
    "MAX_TRANSACTION_BYTES",
    "MEMO_PROGRAM",
    "TOKEN_2022_PROGRAM",
    "TOKEN_PROGRAM",
    "Hash",
    "Keypair",
    "Pubkey",
    "Signature",
    "VersionedTransaction",
    "associated_token_address",
    "co_sign",
    "decode_transaction",
    "encode_transaction",
    "is_address",
    "keypair_from",
    "message_bytes",
    "message_digest",
]

# Program ids, the same on every Solana cluster (x402 2.25.0 ``mechanisms/svm/constants.py``).
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
LIGHTHOUSE_PROGRAM = Pubkey.from_string("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95")

#: A Solana transaction fits one 1232-byte packet (IPv6 MTU minus headers); anything longer cannot be sent.
MAX_TRANSACTION_BYTES = 1232
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}\Z")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}\Z")


def is_address(value: object) -> bool:
    """Whether ``value`` is a base58 Solana address (a 32-byte public key).

    >>> is_address("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"), is_address("0x" + "11" * 20)
    (True, False)
    """
    if not isinstance(value, str) or not _BASE58.match(value):
        return False
    try:
        Pubkey.from_string(value)
    except ValueError:
        return False
    return True


def decode_transaction(value: str) -> VersionedTransaction:
    """The transaction in a payload's ``transaction`` (standard base64); raises ``ValueError`` if it is not one."""
    if len(value) > 4 * MAX_TRANSACTION_BYTES // 3 + 4 or not _BASE64.match(value):
        raise ValueError(f"not standard base64 of at most {MAX_TRANSACTION_BYTES} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None
    tx = VersionedTransaction.from_bytes(raw)
    tx.sanitize()  # account indexes in range, signer counts consistent (the runtime's own check)
    return tx


def encode_transaction(tx: VersionedTransaction) -> str:
    """The standard base64 wire form of a transaction (``payload.transaction``, JSON-RPC ``encoding: base64``)."""
    return base64.b64encode(bytes(tx)).decode("ascii")


def message_bytes(tx: VersionedTransaction) -> bytes:
    """The bytes every signer of ``tx`` signs: a v0 message carries its version prefix (``0x80``), a legacy one none."""
    message = tx.message
    if isinstance(message, MessageV0):
        return b"\x80" + bytes(message)
    assert isinstance(message, Message)
    return bytes(message)


def message_digest(tx: VersionedTransaction) -> str:
    """SHA-256 of the signed message, hex: the payment's identity.

    Every signer signs the message, and ed25519 signatures are deterministic, so the message fixes the
    final transaction signature for a given fee payer; the signature *bytes* in a payload do not (slot 0
    is the fee payer's, still empty or anything a client put there), so they are no key to count on.
    """
    return hashlib.sha256(message_bytes(tx)).hexdigest()


def associated_token_address(owner: str | Pubkey, mint: str | Pubkey, token_program: Pubkey = TOKEN_PROGRAM) -> Pubkey:
    """The associated token account (ATA) of ``owner`` for ``mint`` under ``token_program`` (a PDA).

    >>> str(associated_token_address("11111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"))
    'G9xKTRhM57AL4my3ZRVNqM95mxtACgKdNRPX6EVhB7hv'
    """
    owner_key = owner if isinstance(owner, Pubkey) else Pubkey.from_string(owner)
    mint_key = mint if isinstance(mint, Pubkey) else Pubkey.from_string(mint)
    return get_associated_token_address(owner_key, mint_key, token_program)


def co_sign(tx: VersionedTransaction, fee_payer: Keypair) -> VersionedTransaction:
    """``tx`` with ``fee_payer``'s signature in slot 0 (the fee payer is always the message's first account)."""
    keys = tx.message.account_keys
    if not keys or keys[0] != fee_payer.pubkey():
        raise ValueError(f"the transaction's fee payer is not {fee_payer.pubkey()}")
    signatures = list(tx.signatures)
    signatures[0] = fee_payer.sign_message(message_bytes(tx))
    return VersionedTransaction.populate(tx.message, signatures)


def keypair_from(secret: str | bytes | Keypair) -> Keypair:
    """A keypair from a base58 64-byte secret key (Solana CLI / Phantom export), 64 raw bytes, or a 32-byte seed.

    >>> str(keypair_from(bytes(32)).pubkey())
    '4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS'
    """
    if isinstance(secret, Keypair):
        return secret
    if isinstance(secret, str):
        try:
            return Keypair.from_base58_string(secret.strip())
        except ValueError:
            raise ValueError("a Solana secret key string must be the base58 of its 64 bytes") from None
    raw = bytes(secret)
    if len(raw) == 64:
        return Keypair.from_bytes(raw)
    if len(raw) == 32:
        return Keypair.from_seed(raw)
    raise ValueError(f"a Solana secret key is 64 bytes (or a 32-byte seed), got {len(raw)}")
