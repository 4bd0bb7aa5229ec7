"""ABI calldata from human-readable signatures: selectors, call encoding, return and revert decoding.

Pure functions over eth-abi, shared by the on-chain facilitator and the dev chain.

Example::

    from x402_middleware.evm.abi import decode_output, encode_call

    data = encode_call("balanceOf(address)", "0x0000000000000000000000000000000000000001")
    (balance,) = decode_output("(uint256)", raw_return_data)
"""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_abi.grammar import TupleType, parse

from .eip3009 import keccak

__all__ = ["decode_output", "decode_revert_reason", "encode_call", "selector"]

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)


def selector(signature: str) -> bytes:
    """The 4-byte function selector, e.g. ``selector("balanceOf(address)") == bytes.fromhex("70a08231")``."""
    return keccak(signature.encode())[:4]


@cache
def _param_types(types: str) -> tuple[str, ...]:
    # "(bool,(address,bytes)[])" -> ("bool", "(address,bytes)[]"): split at the top level only.
    if types == "()":
        return ()
    parsed = parse(types)
    if not isinstance(parsed, TupleType) or parsed.is_array:
        raise ValueError(f"expected a parenthesised parameter list, got {types!r}")
    return tuple(component.to_type_str() for component in parsed.components)


def encode_call(signature: str, *args: Any) -> bytes:
    """Selector + ABI-encoded arguments: ``encode_call("transfer(address,uint256)", to, 5)``."""
    params = signature[signature.index("(") :]
    return selector(signature) + abi_encode(list(_param_types(params)), list(args))


def decode_output(types: str, data: bytes) -> tuple[Any, ...]:
    """Decode return data: ``decode_output("(uint256)", raw) == (42,)``."""
    return tuple(abi_decode(list(_param_types(types)), data))


def decode_revert_reason(data: str | bytes | None) -> str | None:
    """Decode ABI ``Error(string)`` revert data (``0x08c379a0…``); None for anything else."""
    if data is None:
        return None
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
    if raw[:4] != _ERROR_SELECTOR:
        return None
    try:
        (reason,) = abi_decode(["string"], raw[4:])
    # malformed payload, not an Error(string) after all: truncated or bad offsets/padding (DecodingError), an offset
    # or length too large to seek to (OverflowError), a string that is not UTF-8 (UnicodeDecodeError)
    except (DecodingError, OverflowError, UnicodeDecodeError):
        return None
    return str(reason)
