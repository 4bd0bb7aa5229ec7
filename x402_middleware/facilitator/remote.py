"""Clients for remote facilitators over HTTP (x402.org, Coinbase CDP, our own facilitator server)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .._exceptions import FacilitatorError
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult
from . import _wire
from ._http import TRANSPORT_ERRORS, JSONClient, json_client, send_json

DEFAULT_FACILITATOR_URL = "https://x402.org/facilitator"

#: Builds extra headers per request, e.g. a CDP JWT: ``(method, url) -> headers``.
HeaderFactory = Callable[[str, str], Mapping[str, str]]


class _HTTPBase:
    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None, auth_headers: HeaderFactory | None, timeout: float
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"facilitator url {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self._headers = dict(headers or {})
        self._auth_headers = auth_headers
        self._timeout = timeout

    def _request(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        url = f"{self.url}{path}"
        headers = dict(self._headers)
        if self._auth_headers is not None:
            headers.update(self._auth_headers(method, url))
        return url, headers


class HTTPFacilitator(_HTTPBase):
    """An async :class:`~x402_middleware.facilitator.Facilitator` talking to a remote facilitator service.

    By default it keeps its own keep-alive connections (``x402_middleware.facilitator._http``, ~0.1 ms of
    CPU per call where ``httpx`` costs 1.4–5 ms under load, encode/httpx#3215), at most
    ``max_connections`` of them; ``verify`` is ``True`` (system CAs), ``False`` or an ``ssl.SSLContext``.
    Inject an ``httpx.AsyncClient`` instead to choose transports, proxies or TLS settings yourself; when
    ``HTTP(S)_PROXY``/``ALL_PROXY`` applies to the URL (``NO_PROXY`` honoured) an ``httpx.AsyncClient``
    is used too, since it speaks to proxies. Transport errors and unreadable replies raise
    :class:`~x402_middleware.FacilitatorError` (the middleware answers 502). Only ``/verify`` and
    ``/supported`` are re-sent after a dropped keep-alive connection, never ``/settle``.

        facilitator = HTTPFacilitator("https://x402.org/facilitator", timeout=30)
        app = PaymentMiddleware(app, routes={...}, pay_to="0x...", facilitator=facilitator)
    """

    def __init__(
        self,
        url: str = DEFAULT_FACILITATOR_URL,
        *,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        auth_headers: HeaderFactory | None = None,
        timeout: float = 60.0,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 64,
    ) -> None:
        super().__init__(url, headers=headers, auth_headers=auth_headers, timeout=timeout)
        self._owns_client = client is None
        self._client: JSONClient = json_client(
            self.url, client, timeout=timeout, verify=verify, max_connections=max_connections
        )

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, idempotent: bool = True
    ) -> tuple[int, bytes]:
        url, headers = self._request(method, path)
        try:
            return await send_json(
                self._client, method, url, path, body, headers=headers, idempotent=idempotent, timeout=self._timeout
            )
        except TRANSPORT_ERRORS as exc:
            raise FacilitatorError(f"facilitator {method} {url} failed: {exc!r}") from exc

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        return _wire.parse_verify(*await self._send("POST", "/verify", _wire.request_body(payload, requirements)))

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        # Not idempotent: a settle re-sent after a dropped connection could be executed twice.
        return _wire.parse_settle(
            *await self._send("POST", "/settle", _wire.request_body(payload, requirements), idempotent=False)
        )

    async def supported(self) -> dict[str, Any]:
        return _wire.parse_supported(*await self._send("GET", "/supported"))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class SyncHTTPFacilitator(_HTTPBase):
    """The blocking twin of :class:`HTTPFacilitator` for WSGI apps (one pooled ``httpx.Client``).

    facilitator = SyncHTTPFacilitator("https://x402.org/facilitator")
    """

    def __init__(
        self,
        url: str = DEFAULT_FACILITATOR_URL,
        *,
        client: httpx.Client | None = None,
        headers: Mapping[str, str] | None = None,
        auth_headers: HeaderFactory | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(url, headers=headers, auth_headers=auth_headers, timeout=timeout)
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        url, headers = self._request(method, path)
        try:
            response = self._client.request(method, url, json=body, headers=headers, timeout=self._timeout)
            return response.status_code, response.content
        except httpx.HTTPError as exc:
            raise FacilitatorError(f"facilitator {method} {url} failed: {exc!r}") from exc

    def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        return _wire.parse_verify(*self._send("POST", "/verify", _wire.request_body(payload, requirements)))

    def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResult:
        return _wire.parse_settle(*self._send("POST", "/settle", _wire.request_body(payload, requirements)))

    def supported(self) -> dict[str, Any]:
        return _wire.parse_supported(*self._send("GET", "/supported"))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
