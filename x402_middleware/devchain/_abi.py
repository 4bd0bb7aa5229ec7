"""Calldata encoding/decoding from human-readable signatures, and the committed contract artifact."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.grammar import TupleType, parse
from eth_utils.crypto import keccak


def selector(signature: str) -> bytes:
    """The 4-byte function selector, e.g. ``selector("balanceOf(address)") == bytes.fromhex("70a08231")``."""
    return keccak(text=signature)[:4]


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


@cache
def load_artifact() -> dict[str, Any]:
    """The compiled contracts (``artifacts/contracts.json``, built by ``scripts/build_contracts.mjs``)."""
    path = resources.files("x402_middleware.devchain").joinpath("artifacts").joinpath("contracts.json")
    text = path.read_text("utf-8")
    return dict(json.loads(text))


def contract(name: str) -> dict[str, Any]:
    """``{"abi", "bytecode", "deployedBytecode", ...}`` of one contract from the artifact."""
    return dict(load_artifact()["contracts"][name])
