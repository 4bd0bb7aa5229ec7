"""Facilitator plug-ins: where payments are verified and settled."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._protocol import Facilitator, SyncFacilitator

if TYPE_CHECKING:
    from .cdp import CDP_FACILITATOR_URL, cdp_auth_headers, cdp_facilitator, sync_cdp_facilitator
    from .multi import MultiFacilitator
    from .onchain import OnChainFacilitator
    from .remote import DEFAULT_FACILITATOR_URL, HTTPFacilitator, SyncHTTPFacilitator
    from .server import facilitator_app
    from .solana import SolanaFacilitator

# Imported on first use: the HTTP facilitator pulls in httpx and the HTTP/1.1 client (the middleware imports
# the protocols above and needs neither), the on-chain facilitator eth-account, the server Starlette routing,
# CDP auth the optional ``cryptography``.
_LAZY = {
    "DEFAULT_FACILITATOR_URL": ".remote",
    "HTTPFacilitator": ".remote",
    "SyncHTTPFacilitator": ".remote",
    "OnChainFacilitator": ".onchain",
    "SolanaFacilitator": ".solana",
    "MultiFacilitator": ".multi",
    "facilitator_app": ".server",
    "CDP_FACILITATOR_URL": ".cdp",
    "cdp_auth_headers": ".cdp",
    "cdp_facilitator": ".cdp",
    "sync_cdp_facilitator": ".cdp",
}


# Hidden from type checkers: they read the TYPE_CHECKING imports, and a visible module __getattr__ would make
# mypy accept any name imported from here.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            value = getattr(import_module(_LAZY[name], __name__), name)
            globals()[name] = value  # later lookups skip __getattr__
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))


__all__ = [
    "CDP_FACILITATOR_URL",
    "DEFAULT_FACILITATOR_URL",
    "Facilitator",
    "HTTPFacilitator",
    "MultiFacilitator",
    "OnChainFacilitator",
    "SolanaFacilitator",
    "SyncFacilitator",
    "SyncHTTPFacilitator",
    "cdp_auth_headers",
    "cdp_facilitator",
    "facilitator_app",
    "sync_cdp_facilitator",
]
