"""Async Ethereum JSON-RPC over one long-lived ``httpx.AsyncClient``.

The request building and answer parsing are the dev chain's pure functions
(:mod:`x402_middleware.devchain._rpc`); this is only the async shell.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from .._exceptions import FacilitatorError
from ..devchain._rpc import RPCError, build_request, parse_response

__all__ = ["AsyncRPC", "RPCError"]


class AsyncRPC:
    """``await rpc("eth_chainId")`` -> the ``result``; raises :class:`RPCError` for JSON-RPC errors
    (``revert_reason`` set for contract reverts) and :class:`FacilitatorError` when the node is unreachable."""

    def __init__(self, url: str, *, client: httpx.AsyncClient | None = None, timeout: float = 30.0) -> None:
        self.url = url
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=timeout, verify=not url.startswith("http://"), trust_env=not url.startswith("http://127."),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self._ids = itertools.count(1)

    async def __call__(self, method: str, *params: Any) -> Any:
        try:
            response = await self._client.post(self.url, json=build_request(method, params, next(self._ids)))
        except httpx.HTTPError as exc:
            raise FacilitatorError(f"the chain RPC at {self.url} is unreachable ({method}): {exc!r}") from exc
        if response.status_code >= 500 or not response.content:
            raise FacilitatorError(f"the chain RPC at {self.url} answered HTTP {response.status_code} to {method}")
        try:
            payload = response.json()
        except ValueError:
            raise FacilitatorError(f"the chain RPC at {self.url} answered non-JSON to {method}") from None
        return parse_response(method, payload)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
