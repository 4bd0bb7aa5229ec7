"""The committed contract artifact of the dev chain (``artifacts/contracts.json``).

Calldata encoding and decoding is :mod:`x402_middleware.evm.abi`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["contract", "load_artifact"]


@cache
def load_artifact() -> dict[str, Any]:
    """The compiled contracts (``artifacts/contracts.json``, built by ``scripts/build_contracts.mjs``)."""
    path = resources.files("x402_middleware.devchain").joinpath("artifacts").joinpath("contracts.json")
    text = path.read_text("utf-8")
    return dict(json.loads(text))


def contract(name: str) -> dict[str, Any]:
    """``{"abi", "bytecode", "deployedBytecode", ...}`` of one contract from the artifact."""
    return dict(load_artifact()["contracts"][name])
