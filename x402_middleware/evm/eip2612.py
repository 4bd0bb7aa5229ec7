"""EIP-2612 ``permit``: the typed-data digest and signature a token holder gives to approve a spender.

Used for x402's ``eip2612GasSponsoring`` extension: a payer without a Permit2 allowance signs a permit for
Permit2, and the facilitator submits it in the same transaction as the payment (``settleWithPermit``).
Hand-specialised like :mod:`.eip3009` (the token's EIP-712 domain, fixed-layout words); checked against
generic EIP-712 in the tests::

    digest = permit_digest(owner, PERMIT2, 5000, nonce, deadline, name="USDC", version="2", chain_id=84532,
                           token="0x036CbD53842c5426634e7929541eC2318f3dCF7e")
"""

from __future__ import annotations

from .eip3009 import domain_separator, keccak

__all__ = ["PERMIT_TYPEHASH", "permit_digest"]

PERMIT_TYPEHASH = keccak(b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")


def _word(address: str) -> bytes:
    return b"\x00" * 12 + bytes.fromhex(address[2:])


def permit_digest(
    owner: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
    *,
    name: str,
    version: str,
    chain_id: int,
    token: str,
) -> bytes:
    """The 32-byte EIP-712 digest of ``Permit(owner, spender, value, nonce, deadline)`` over the token's domain."""
    struct = keccak(
        PERMIT_TYPEHASH
        + _word(owner)
        + _word(spender)
        + value.to_bytes(32, "big")
        + nonce.to_bytes(32, "big")
        + deadline.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain_separator(name, version, chain_id, token) + struct)
