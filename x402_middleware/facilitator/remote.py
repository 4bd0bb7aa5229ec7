"""Clients for remote facilitators over HTTP (x402.org, Coinbase CDP, our own facilitator server)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .._exceptions import ConfigurationError, FacilitatorError
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult
from . import _wire
from ._http import TRANSPORT_ERRORS, JSONClient, json_client, send_json

DEFAULT_FACILITATOR_URL = "https://x402.org/facilitator"

#: Builds extra headers per request, e.g. a CDP JWT: ``(method, url) -> headers``.
HeaderFactory = Callable[[str, str], Mapping[str, str]]

# Default limits (seconds). A facilitator that is down or hung must fail a request in seconds, not
# hold it (and its connection slot) for a minute. Opening a connection (TCP + TLS) takes well under a
# second to x402.org or CDP; /verify is a signature check plus one eth_call simulation and /supported
# a static list, both sub-second. /settle sends the transfer and waits for its receipt: on Base a block
# comes every 2 s, so a few seconds normally and more under congestion; 30 s covers many blocks of
# delay and is as long as our own OnChainFacilitator's receipt_timeout (the official Python SDK
# waits up to 90 s).
CONNECT_TIMEOUT = 5.0
TIMEOUT = 10.0
SETTLE_TIMEOUT = 30.0


class _HTTPBase:
    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        auth_headers: HeaderFactory | None,
        timeout: float,
        settle_timeout: float,
        connect_timeout: float,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"facilitator url {url!r} must start with http:// or https://")
        for name, seconds in (
            ("timeout", timeout),
            ("settle_timeout", settle_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not seconds > 0:
                raise ConfigurationError(f"{name} must be a number of seconds above 0, got {seconds!r}")
        self.url = url.rstrip("/")
        self._headers = dict(headers or {})
        self._auth_headers = auth_headers
        self.timeout = timeout
        self.settle_timeout = settle_timeout
        self.connect_timeout = connect_timeout

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

    Time limits, in seconds, each failing the call with :class:`~x402_middleware.FacilitatorError`:
    ``connect_timeout`` (default 5) to open a connection, TLS included; ``timeout`` (default 10) for a
    whole ``/verify`` or ``/supported`` call; ``settle_timeout`` (default 30) for a whole ``/settle``,
    which waits for the transaction's receipt (a few seconds on Base). The limits bound the whole call,
    connecting and waiting for a free connection included; with an injected or proxied
    ``httpx.AsyncClient`` they are httpx's per-phase limits plus the same total bound.

        facilitator = HTTPFacilitator("https://x402.org/facilitator", timeout=5, settle_timeout=20)
        app = PaymentMiddleware(app, routes={...}, pay_to="0x...", facilitator=facilitator)
    """

    def __init__(
        self,
        url: str = DEFAULT_FACILITATOR_URL,
        *,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        auth_headers: HeaderFactory | None = None,
        timeout: float = TIMEOUT,
        settle_timeout: float = SETTLE_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 64,
    ) -> None:
        super().__init__(
            url,
            headers=headers,
            auth_headers=auth_headers,
            timeout=timeout,
            settle_timeout=settle_timeout,
            connect_timeout=connect_timeout,
        )
        self._owns_client = client is None
        self._client: JSONClient = json_client(
            self.url,
            client,
            timeout=timeout,
            connect_timeout=connect_timeout,
            verify=verify,
            max_connections=max_connections,
        )

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, idempotent: bool = True
    ) -> tuple[int, bytes]:
        url, headers = self._request(method, path)
        seconds = self.timeout if idempotent else self.settle_timeout
        try:
            # The outer bound matters for httpx clients, whose timeouts are per phase (each read may wait).
            async with asyncio.timeout(seconds + 0.05):
                return await send_json(
                    self._client,
                    method,
                    url,
                    path,
                    body,
                    headers=headers,
                    idempotent=idempotent,
                    timeout=seconds,
                    connect_timeout=self.connect_timeout,
                )
        except TRANSPORT_ERRORS as exc:
            raise FacilitatorError(f"facilitator {method} {url} failed: {exc!r}") from exc
        except TimeoutError:
            raise FacilitatorError(
                f"facilitator {method} {url} did not answer within {seconds} s; check that it is up, or raise "
                f"HTTPFacilitator({'settle_timeout' if path == '/settle' else 'timeout'}=...)"
            ) from None

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

    The same time limits and defaults: ``connect_timeout`` 5 s, ``timeout`` 10 s for ``/verify`` and
    ``/supported``, ``settle_timeout`` 30 s for ``/settle``; as httpx applies them, each bounds one
    phase (connecting, or each wait for response bytes), so a hung facilitator fails the call after
    that many seconds with :class:`~x402_middleware.FacilitatorError`.

        facilitator = SyncHTTPFacilitator("https://x402.org/facilitator", settle_timeout=20)
    """

    def __init__(
        self,
        url: str = DEFAULT_FACILITATOR_URL,
        *,
        client: httpx.Client | None = None,
        headers: Mapping[str, str] | None = None,
        auth_headers: HeaderFactory | None = None,
        timeout: float = TIMEOUT,
        settle_timeout: float = SETTLE_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        super().__init__(
            url,
            headers=headers,
            auth_headers=auth_headers,
            timeout=timeout,
            settle_timeout=settle_timeout,
            connect_timeout=connect_timeout,
        )
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout))
        self._owns_client = client is None

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        url, headers = self._request(method, path)
        seconds = self.settle_timeout if path == "/settle" else self.timeout
        limit = httpx.Timeout(seconds, connect=self.connect_timeout)
        try:
            response = self._client.request(method, url, json=body, headers=headers, timeout=limit)
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
