"""EIP-1559 (type 2) transactions: building, signing and reading the receipt status, without I/O.

:func:`sign_transaction` is a direct encoder over coincurve, so the facilitator's settlement path does not pay
for ``eth_account.Account.sign_transaction`` (the tests check both give the same bytes).

Example::

    from x402_middleware.evm.transactions import build_transaction, sign_transaction

    tx = build_transaction(chain_id=8453, nonce=0, to=asset, data=calldata, gas=90_000,
                           max_fee_per_gas=2 * gas_price + tip, max_priority_fee_per_gas=tip)
    raw, tx_hash = sign_transaction(key, tx)   # send "0x" + raw.hex() with eth_sendRawTransaction
"""

from __future__ import annotations

from typing import Any

from coincurve import PrivateKey

from .eip3009 import keccak  # pysha3 when installed: the settlement hot path signs with it

__all__ = ["build_transaction", "parse_receipt_status", "sign_transaction"]


def build_transaction(
    *,
    chain_id: int,
    nonce: int,
    to: str | None,
    data: bytes,
    gas: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    value: int = 0,
) -> dict[str, Any]:
    """An EIP-1559 (type 2) transaction dict for ``Account.sign_transaction``; ``to=None`` deploys."""
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": max_priority_fee_per_gas,
        "gas": gas,
        "value": value,
        "data": "0x" + data.hex(),
    }
    if to is not None:  # eth-account wants the key absent (not None) for a contract creation
        tx["to"] = to
    return tx


def _rlp(item: bytes | list[Any]) -> bytes:
    """Recursive-length-prefix encoding (Ethereum yellow paper, appendix B) of bytes and nested lists."""
    if isinstance(item, list):
        payload = b"".join(_rlp(x) for x in item)
        offset = 0xC0
    elif len(item) == 1 and item[0] < 0x80:
        return item
    else:
        payload, offset = item, 0x80
    if len(payload) < 56:
        return bytes((offset + len(payload),)) + payload
    size = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
    return bytes((offset + 55 + len(size),)) + size + payload


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")  # 0 -> b"" (RLP's canonical zero)


def sign_transaction(private_key: bytes | PrivateKey, tx: dict[str, Any]) -> tuple[bytes, str]:
    """Sign a :func:`build_transaction` dict; returns the raw EIP-2718 bytes and the 0x transaction hash.

    A direct EIP-1559 encoder over coincurve: the same bytes as ``Account.sign_transaction`` at a
    fraction of its cost (~0.1 ms instead of ~2 ms), which matters for a facilitator sending hundreds
    of settlements a second. Type 2 only, empty access list. Pass a ``coincurve.PrivateKey`` to skip
    deriving the public key on every call.

    Example::

        raw, tx_hash = sign_transaction(key, build_transaction(chain_id=8453, nonce=0, to=asset, data=b"",
                                                               gas=21_000, max_fee_per_gas=3, max_priority_fee_per_gas=1))
    """
    if tx.get("type") != 2 or tx.get("accessList"):
        raise ValueError("sign_transaction encodes type-2 transactions without an access list only")
    to = tx.get("to")
    data = tx["data"]
    fields: list[Any] = [
        _uint(tx["chainId"]),
        _uint(tx["nonce"]),
        _uint(tx["maxPriorityFeePerGas"]),
        _uint(tx["maxFeePerGas"]),
        _uint(tx["gas"]),
        bytes.fromhex(to[2:]) if to else b"",
        _uint(tx["value"]),
        bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data),
        [],
    ]
    key = private_key if isinstance(private_key, PrivateKey) else PrivateKey(private_key)
    signature = key.sign_recoverable(keccak(b"\x02" + _rlp(fields)), hasher=None)  # low-s
    r, s, y_parity = signature[:32], signature[32:64], signature[64]
    raw = b"\x02" + _rlp([*fields, _uint(y_parity), r.lstrip(b"\x00"), s.lstrip(b"\x00")])
    return raw, "0x" + keccak(raw).hex()


def parse_receipt_status(receipt: dict[str, Any]) -> bool:
    """True for a mined transaction that succeeded (receipt ``status`` ``0x1``), False for a revert."""
    return int(receipt["status"], 16) == 1
