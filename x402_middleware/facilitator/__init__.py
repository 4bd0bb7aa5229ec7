"""Facilitator plug-ins: where payments are verified and settled."""

from __future__ import annotations

from ._protocol import Facilitator, SyncFacilitator
from .remote import DEFAULT_FACILITATOR_URL, HTTPFacilitator, SyncHTTPFacilitator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .onchain import OnChainFacilitator
    from .server import facilitator_app


def __getattr__(name: str) -> Any:
    # Imported on first use: the on-chain facilitator pulls in eth-account, the server Starlette routing.
    if name == "OnChainFacilitator":
        from .onchain import OnChainFacilitator

        return OnChainFacilitator
    if name == "facilitator_app":
        from .server import facilitator_app

        return facilitator_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_FACILITATOR_URL",
    "Facilitator",
    "HTTPFacilitator",
    "OnChainFacilitator",
    "SyncFacilitator",
    "SyncHTTPFacilitator",
    "facilitator_app",
]
