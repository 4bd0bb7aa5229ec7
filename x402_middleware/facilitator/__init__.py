"""Facilitator plug-ins: where payments are verified and settled."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._protocol import Facilitator, SyncFacilitator
from .remote import DEFAULT_FACILITATOR_URL, HTTPFacilitator, SyncHTTPFacilitator

if TYPE_CHECKING:
    from .cdp import CDP_FACILITATOR_URL, cdp_auth_headers, cdp_facilitator, sync_cdp_facilitator
    from .onchain import OnChainFacilitator
    from .server import facilitator_app

# Imported on first use: the on-chain facilitator pulls in eth-account, the server Starlette routing,
# CDP auth the optional ``cryptography``.
_LAZY = {
    "OnChainFacilitator": ".onchain",
    "facilitator_app": ".server",
    "CDP_FACILITATOR_URL": ".cdp",
    "cdp_auth_headers": ".cdp",
    "cdp_facilitator": ".cdp",
    "sync_cdp_facilitator": ".cdp",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CDP_FACILITATOR_URL",
    "DEFAULT_FACILITATOR_URL",
    "Facilitator",
    "HTTPFacilitator",
    "OnChainFacilitator",
    "SyncFacilitator",
    "SyncHTTPFacilitator",
    "cdp_auth_headers",
    "cdp_facilitator",
    "facilitator_app",
    "sync_cdp_facilitator",
]
