"""A small asyncio HTTP/1.1 keep-alive client for JSON calls to one origin (a facilitator, a chain node).

Why not ``httpx.AsyncClient`` by default: its connection pool costs CPU that grows with concurrency
(httpcore re-scans every connection for every queued request, encode/httpx#3215): 1.4 ms per POST to a
local facilitator at concurrency 1, ~5 ms at 32, against ~0.1 ms here. A paid request makes one such call
(``/settle``), a settlement several JSON-RPC calls, so that cost was most of the CPU of both.

What it does (RFC 9112): http and https (system CA store, SNI + hostname check), one origin with an
optional path prefix, requests with ``Content-Length``; responses framed by ``Content-Length``,
``Transfer-Encoding: chunked`` (trailers skipped) or the end of the connection; 1xx skipped;
``Connection: close`` and HTTP/1.0 honoured; a response size cap. Pool: LIFO idle connections, at most
``max_connections`` open (further requests wait), idle expiry below uvicorn's 5 s keep-alive, idle
connections the server already closed are dropped before reuse. One total timeout per request, and
optionally a shorter one for opening a connection (TCP + TLS handshake). The connection, parser and pool are in
:mod:`x402_middleware._http1`; why our own code: benchmarks/README.md (HTTP clients).

What it does not do: proxies (:func:`uses_env_proxy` tells callers to keep httpx then), redirects,
cookies, HTTP/2, request streaming. Failures raise :class:`HTTPTransportError`, which never leaves the
package: the callers turn it into :class:`~x402_middleware.FacilitatorError`. Example::

    client = AsyncHTTPClient("https://x402.org/facilitator", timeout=30)
    response = await client.request("POST", "/verify", body=json_body({...}), idempotent=True)
    response.status, response.content
    await client.aclose()
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from .. import _json
from .._http1 import (
    KEEPALIVE_EXPIRY,
    Body,
    ClosedBeforeResponse,
    Connection,
    HTTPTransportError,
    Pool,
    read_head,
    uses_env_proxy,
)

__all__ = [
    "KEEPALIVE_EXPIRY",
    "MAX_RESPONSE_SIZE",
    "TRANSPORT_ERRORS",
    "AsyncHTTPClient",
    "HTTPTransportError",
    "JSONClient",
    "Response",
    "ResponseTooLarge",
    "json_body",
    "json_client",
    "send_json",
    "uses_env_proxy",
]

MAX_RESPONSE_SIZE = 4 * 1024 * 1024  # facilitator and JSON-RPC answers are a few KB; a batch of 100 receipts ~0.5 MB
_USER_AGENT = "x402_middleware"
_FRAMING = ("content-length", "transfer-encoding")  # set by the client from the body, never by callers


class ResponseTooLarge(HTTPTransportError):
    """The response body is over the client's ``max_response_size``."""


class Response:
    """A complete response: ``status``, ``headers`` (lower-case names) and ``content`` (the decoded body)."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` if it is not)."""
        return _json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.content)} bytes>"


def json_body(obj: Any) -> bytes:
    """JSON request body, encoded as httpx's ``json=`` does (compact, UTF-8, no NaN)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a gzip/deflate ``Content-Encoding`` (we ask for none; some servers send it anyway)."""
    if encoding is None or encoding.lower() in ("", "identity"):
        return body
    name = encoding.lower().strip()
    if name in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    elif name == "deflate":  # RFC 9110 §8.4.1.2: zlib format; some servers send raw deflate
        decoder = zlib.decompressobj(zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
    else:
        raise HTTPTransportError(f"unsupported Content-Encoding {encoding!r}")
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPTransportError(f"undecodable {name} body: {exc}") from None
    if len(data) > limit:
        raise ResponseTooLarge(f"decoded response body over {limit} bytes")
    return data


async def _read_response(conn: Connection, method: str, limit: int) -> tuple[Response, bool]:
    """Read one whole response; ``(response, keep_alive)``."""
    head = await read_head(conn)
    body = Body(conn, head, method)
    if body.length is not None and body.length > limit:
        raise ResponseTooLarge(f"response body of {body.length} bytes is over {limit}")
    parts: list[bytes] = []
    total = 0
    while not body.done:
        part = await body.read(limit + 1)
        total += len(part)
        if total > limit:
            raise ResponseTooLarge(f"response body over {limit} bytes")
        parts.append(part)
    content = parts[0] if len(parts) == 1 else b"".join(parts)
    headers = head.headers
    if "content-encoding" in headers:
        content = _decode(content, headers["content-encoding"], limit)
    return Response(head.status, headers, content), body.keep


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in ":\r\n \t") or "\r" in value or "\n" in value:
        raise HTTPTransportError(f"invalid request header {name!r}")


class AsyncHTTPClient:
    """Keep-alive HTTP/1.1 client for one origin; see the module docstring for what it supports.

    ``base_url`` may carry a path prefix (``https://x402.org/facilitator``) that every request path is
    appended to, a query kept on every request, and ``user:password@`` sent as Basic auth.
    ``verify`` is ``True`` (system CAs), ``False`` (no check; tests only) or an ``ssl.SSLContext``.
    ``timeout`` bounds each whole request, ``connect_timeout`` (if set) each new connection within it.

        client = AsyncHTTPClient("http://127.0.0.1:8545", max_connections=8, connect_timeout=5)
        response = await client.request("POST", "", body=b'{"jsonrpc":"2.0",...}', idempotent=True)
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        max_connections: int = 64,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        max_response_size: int = MAX_RESPONSE_SIZE,
        verify: ssl.SSLContext | bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {base_url!r} must be http:// or https:// with a host")
        self.base_url = base_url
        self.timeout = timeout
        self.connect_timeout = connect_timeout  # None: only the request's total timeout bounds connecting
        self.max_response_size = max_response_size
        tls = parts.scheme == "https"
        self._pool = Pool(max_connections=max_connections, keepalive_expiry=keepalive_expiry, verify=verify)
        self._origin = (parts.hostname, parts.port or (443 if tls else 80), tls)
        self._root = parts.path or "/"  # the target of path "" exactly as given (a JSON-RPC URL's "/rpc/" stays)
        self._prefix = parts.path.rstrip("/")  # what a path "/verify" is appended to
        self._query = f"?{parts.query}" if parts.query else ""
        host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None and parts.port != (443 if tls else 80):
            host = f"{host}:{parts.port}"
        self._defaults: dict[str, tuple[str, str]] = {
            "host": ("Host", host),
            "user-agent": ("User-Agent", _USER_AGENT),
            "accept": ("Accept", "application/json"),
        }
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._defaults["authorization"] = ("Authorization", "Basic " + base64.b64encode(userinfo.encode()).decode())
        for name, value in (headers or {}).items():
            _check_header(name, value)
            self._defaults[name.lower()] = (name, value)

    @property
    def keepalive_expiry(self) -> float:
        return self._pool.keepalive_expiry

    def _head(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str] | None) -> bytes:
        fields = self._defaults
        if headers or body is not None:
            fields = dict(fields)
            for name, value in (headers or {}).items():
                _check_header(name, value)
                fields[name.lower()] = (name, value)
            if body is not None:
                fields.setdefault("content-type", ("Content-Type", "application/json"))
        target = f"{self._prefix}{path}" if path else self._root
        lines = [f"{method} {target}{self._query} HTTP/1.1"]
        lines += [f"{name}: {value}" for key, (name, value) in fields.items() if key not in _FRAMING]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body) if body is not None else 0}")
        try:
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError as exc:
            raise HTTPTransportError(f"request head is not latin-1: {exc}") from None

    async def request(
        self,
        method: str,
        path: str = "",
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read the whole response; raises :class:`HTTPTransportError`.

        ``path`` is appended to the base URL's path. ``idempotent=True`` allows one retry on a fresh
        connection when a reused keep-alive connection turns out closed before any response byte arrived
        (the server dropped it as we sent); never set it for calls that must not run twice (``/settle``).
        ``timeout`` (default: the client's) bounds the whole call, waiting for a connection included.
        """
        pool = self._pool
        if pool.closed:
            raise HTTPTransportError("the HTTP client is closed")
        pool.bind()
        data = self._head(method, path, body, headers)
        if body:
            data += body
        seconds = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(seconds):
                slots = await pool.acquire()
                try:
                    return await self._exchange(method, data, idempotent)
                finally:
                    pool.release(slots)
        except TimeoutError:
            raise HTTPTransportError(f"no complete response within {seconds} s") from None

    async def _exchange(self, method: str, data: bytes, idempotent: bool) -> Response:
        pool = self._pool
        conn = pool.checkout(self._origin)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await pool.connect(self._origin, self.connect_timeout)
            try:
                try:
                    conn.write(data)
                except HTTPTransportError as exc:
                    raise ClosedBeforeResponse(f"the connection closed before the request was sent: {exc}") from None
                response, keep = await _read_response(conn, method, self.max_response_size)
            except ClosedBeforeResponse:
                pool.drop(conn, abort=True)
                if reused and idempotent:  # once, on a fresh connection
                    conn, reused = None, False
                    continue
                raise
            except BaseException:  # timeout, cancellation, protocol error: the connection's state is unknown
                pool.drop(conn, abort=True)
                raise
            pool.put_back(conn, keep)
            return response

    @property
    def open_connections(self) -> int:
        """Connections currently open (idle or in use)."""
        return self._pool.open_connections

    async def aclose(self) -> None:
        """Close every connection (requests still running fail) and refuse new requests."""
        await self._pool.aclose()


JSONClient = AsyncHTTPClient | httpx.AsyncClient
#: What :func:`send_json` raises when the server cannot be reached or answers unreadably.
TRANSPORT_ERRORS = (HTTPTransportError, httpx.HTTPError)


def json_client(
    url: str,
    client: httpx.AsyncClient | None = None,
    *,
    timeout: float,
    connect_timeout: float | None = None,
    verify: ssl.SSLContext | bool = True,
    max_connections: int = 64,
) -> JSONClient:
    """The client for JSON calls to ``url``: the injected one, else ours, else httpx when a proxy applies."""
    if client is not None:
        return client
    if uses_env_proxy(url):
        return httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=timeout if connect_timeout is None else connect_timeout),
            verify=verify,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
    return AsyncHTTPClient(
        url, timeout=timeout, connect_timeout=connect_timeout, verify=verify, max_connections=max_connections
    )


async def send_json(
    client: JSONClient,
    method: str,
    url: str,
    path: str = "",
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    idempotent: bool = False,
    timeout: float | None = None,
    connect_timeout: float | None = None,
) -> tuple[int, bytes]:
    """``(status, content)`` of one JSON call; ``url`` is the whole URL (httpx), ``path`` its part after the
    client's base URL (ours). Raises one of :data:`TRANSPORT_ERRORS`. ``timeout`` overrides the client's;
    ``connect_timeout`` applies to an httpx client (ours takes it at construction)."""
    if isinstance(client, AsyncHTTPClient):
        response = await client.request(
            method,
            path,
            body=None if body is None else json_body(body),
            headers=headers,
            idempotent=idempotent,
            timeout=timeout,
        )
        return response.status, response.content
    limit: httpx.Timeout | Any = httpx.USE_CLIENT_DEFAULT
    if timeout is not None:
        limit = httpx.Timeout(timeout, connect=timeout if connect_timeout is None else connect_timeout)
    reply = await client.request(method, url, json=body, headers=headers, timeout=limit)
    return reply.status_code, reply.content
