"""EIP-3009 ``TransferWithAuthorization``: typed-data digest, signing and signer recovery.

The digest is hand-specialised for the one fixed type instead of going through
generic EIP-712 encoding: three keccaks over fixed-layout 32-byte words, with
the domain separator cached per token (``../shared/docs/performance.md``). It
is checked against ``eth_account`` in the tests.

EIP-712 (https://eips.ethereum.org/EIPS/eip-712)::

    digest = keccak256(0x1901 || domainSeparator || hashStruct(TransferWithAuthorization))
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache

from coincurve import PrivateKey, PublicKey

try:  # safe-pysha3 is ~4x faster for short inputs when installed; pycryptodome always is (eth-account needs it).
    from sha3 import keccak_256 as _keccak_256  # type: ignore[import-not-found,import-untyped,unused-ignore]

    def keccak(data: bytes) -> bytes:
        """Keccak-256 of ``data``."""
        return _keccak_256(data).digest()  # type: ignore[no-any-return,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    from Crypto.Hash import keccak as _keccak

    def keccak(data: bytes) -> bytes:
        """Keccak-256 of ``data``."""
        return _keccak.new(digest_bits=256, data=data).digest()


_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
# secp256k1 group order; signatures with s > n/2 are malleable copies and are refused (EIP-2).
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2
_UINT256_MAX = (1 << 256) - 1


@dataclass(frozen=True, slots=True)
class Authorization:
    """The signed fields of an EIP-3009 transfer (all integers; addresses as 0x hex)."""

    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def to_wire(self) -> dict[str, str]:
        """The x402 JSON form: every value a string (``../shared/docs/x402-protocol.md`` §3.1)."""
        return {
            "from": self.from_address,
            "to": self.to,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": "0x" + self.nonce.hex(),
        }


@lru_cache(maxsize=256)
def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The EIP-712 domain separator of a token (cached: a server sees few tokens)."""
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(name.encode())
        + keccak(version.encode())
        + chain_id.to_bytes(32, "big")
        + _address_word(verifying_contract)
    )


def _address_word(address: str) -> bytes:
    raw = bytes.fromhex(address[2:])
    if len(raw) != 20:
        raise ValueError(f"{address!r} is not a 20-byte address")
    return b"\x00" * 12 + raw


def transfer_digest(auth: Authorization, *, name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The 32-byte EIP-712 digest a payer signs for ``auth``."""
    for field in (auth.value, auth.valid_after, auth.valid_before):
        if not 0 <= field <= _UINT256_MAX:
            raise ValueError("authorization integers must fit in uint256")
    if len(auth.nonce) != 32:
        raise ValueError("authorization nonce must be 32 bytes")
    struct_hash = keccak(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        + _address_word(auth.from_address)
        + _address_word(auth.to)
        + auth.value.to_bytes(32, "big")
        + auth.valid_after.to_bytes(32, "big")
        + auth.valid_before.to_bytes(32, "big")
        + auth.nonce
    )
    return keccak(b"\x19\x01" + domain_separator(name, version, chain_id, verifying_contract) + struct_hash)


def recover_signer(digest: bytes, signature: bytes) -> str | None:
    """Recover the checksummed address that signed ``digest``, or ``None`` for an invalid signature.

    Accepts 65-byte ``r || s || v`` with ``v`` in {0, 1, 27, 28}; refuses high-s
    and out-of-range ``r``/``s`` like the token contract does.
    """
    raw = recover_address(digest, signature)
    return None if raw is None else to_checksum_address(raw)


def recover_address(digest: bytes, signature: bytes) -> bytes | None:
    """Like :func:`recover_signer`, but the raw 20-byte address: no EIP-55 checksum (one keccak less) for callers
    that only compare addresses."""
    if len(signature) != 65:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1) or not (0 < r < _N) or not (0 < s <= _HALF_N):
        return None
    try:
        public = PublicKey.from_signature_and_message(signature[:64] + bytes((v,)), digest, hasher=None)
    except ValueError:  # coincurve (>= 20) raises it for signatures that recover no point on the curve
        return None
    return keccak(public.format(compressed=False)[1:])[-20:]


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """Sign a digest: 65 bytes ``r || s || v`` with ``v`` in {27, 28} and low ``s``."""
    sig = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes((sig[64] + 27,))


def address_of(private_key: bytes) -> str:
    """The checksummed address of a private key."""
    return to_checksum_address(keccak(PrivateKey(private_key).public_key.format(compressed=False)[1:])[-20:])


def new_nonce() -> bytes:
    """A fresh random 32-byte authorization nonce."""
    return secrets.token_bytes(32)


@lru_cache(maxsize=4096)
def _checksum(hex_lower: str) -> str:
    digest = keccak(hex_lower.encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_lower))


def to_checksum_address(address: str | bytes) -> str:
    """EIP-55 checksummed form of an address given as 20 bytes or hex."""
    hex_lower = address.hex() if isinstance(address, bytes) else address[2:].lower()
    return _checksum(hex_lower)
