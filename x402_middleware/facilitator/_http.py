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
connections the server already closed are dropped before reuse. One total timeout per request.

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
import ipaddress
import json
import ssl
import time
import urllib.request
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["MAX_RESPONSE_SIZE", "AsyncHTTPClient", "HTTPTransportError", "Response", "json_body", "uses_env_proxy"]

MAX_RESPONSE_SIZE = 4 * 1024 * 1024  # facilitator and JSON-RPC answers are a few KB; a batch of 100 receipts ~0.5 MB
KEEPALIVE_EXPIRY = 4.0  # seconds; below uvicorn's and most servers' 5 s so we rarely race their close
_MAX_HEAD = 64 * 1024  # status line + headers
_MAX_LINE = 4096  # one chunk-size or trailer line
_USER_AGENT = "x402_middleware"
_FRAMING = ("content-length", "transfer-encoding")  # set by the client from the body, never by callers
_HEX = b"0123456789abcdefABCDEF"


class HTTPTransportError(Exception):
    """No usable HTTP response: connect failure, timeout, reset, malformed or oversized answer.

    Internal: :class:`~x402_middleware.facilitator.HTTPFacilitator` and the chain RPC client turn it
    into :class:`~x402_middleware.FacilitatorError`, as they do with ``httpx.HTTPError``.
    """


class ResponseTooLarge(HTTPTransportError):
    """The response body is over the client's ``max_response_size``."""


class _ClosedBeforeResponse(HTTPTransportError):
    """The connection ended before the first byte of a response (a kept-alive connection the server closed)."""


class Response:
    """A complete response: ``status``, ``headers`` (lower-case names) and ``content`` (the decoded body)."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` if it is not)."""
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.content)} bytes>"


def json_body(obj: Any) -> bytes:
    """JSON request body, encoded as httpx's ``json=`` does (compact, UTF-8, no NaN)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uses_env_proxy(url: str) -> bool:
    """True when ``HTTP(S)_PROXY``/``ALL_PROXY`` (any case) apply to ``url`` and ``NO_PROXY`` does not exclude it.

    Callers then keep an ``httpx.AsyncClient``, which speaks to proxies; loopback hosts are always direct.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    host = parts.hostname or ""
    if _is_loopback(host):
        return False
    # the stdlib's own NO_PROXY matching (in CPython since 2.7, missing from typeshed)
    return not urllib.request.proxy_bypass_environment(host, proxies)  # type: ignore[attr-defined]


def _ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif not context.cert_store_stats()["x509_ca"]:
        # No CA file loaded from the system (slim containers; a hashed CA directory is read lazily and
        # not counted): add certifi's bundle, httpx's own default, so what httpx trusted is still trusted.
        try:
            import certifi
        except ImportError:  # pragma: no cover - certifi comes with httpx
            pass
        else:
            context.load_verify_locations(certifi.where())
    return context


class _Connection(asyncio.Protocol):
    """One TCP/TLS connection: buffers what arrives and lets one request at a time read it."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> None:
        self.eof = True  # returning None lets the transport close itself
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the client ------------------------------------------------------------------------
    def reusable(self) -> bool:
        """Still open, nothing unread (a server's 408 or a close it sent while idle makes it unusable)."""
        return not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _more(self) -> None:
        """Wait until more bytes or the end of the connection arrive."""
        if self.eof:
            if self.error is not None:
                raise HTTPTransportError(f"connection lost mid-response: {self.error!r}")
            raise HTTPTransportError("the server closed the connection mid-response")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_until(self, marker: bytes, limit: int) -> bytes:
        """Bytes up to ``marker`` (consumed, not returned)."""
        start = 0
        while True:
            index = self.buffer.find(marker, start)
            if index >= 0:
                data = bytes(self.buffer[:index])
                del self.buffer[:index + len(marker)]
                return data
            if len(self.buffer) > limit:
                raise HTTPTransportError(f"response line or head longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            await self._more()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._more()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def read_to_eof(self, limit: int) -> bytes:
        while not self.eof:
            if len(self.buffer) > limit:
                raise ResponseTooLarge(f"response body over {limit} bytes")
            await self._more()
        if self.error is not None:
            raise HTTPTransportError(f"connection lost mid-response: {self.error!r}")
        if len(self.buffer) > limit:
            raise ResponseTooLarge(f"response body over {limit} bytes")
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _parse_head(head: bytes) -> tuple[bool, int, dict[str, str]]:
    """``(http11, status, headers)`` from a status line and header fields (RFC 9112 §4, §5)."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit() or rest[3:4] not in b" ":
        raise HTTPTransportError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise HTTPTransportError(f"malformed response header line: {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return version == b"HTTP/1.1", int(code), headers


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


async def _read_chunked(conn: _Connection, limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (RFC 9112 §7.1); extensions and trailers are skipped."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = await conn.read_until(b"\r\n", _MAX_LINE)
        size_text = line.partition(b";")[0].strip()
        if not size_text or size_text.strip(_HEX):
            raise HTTPTransportError(f"bad chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise ResponseTooLarge(f"response body over {limit} bytes")
        parts.append(await conn.read_exactly(size))
        if await conn.read_exactly(2) != b"\r\n":
            raise HTTPTransportError("chunk not followed by CRLF")
    trailer_bytes = 0
    while line := await conn.read_until(b"\r\n", _MAX_LINE):
        trailer_bytes += len(line)
        if trailer_bytes > _MAX_HEAD:
            raise HTTPTransportError("response trailers too long")
    return b"".join(parts)


async def _read_response(conn: _Connection, method: str, limit: int) -> tuple[Response, bool]:
    """Read one response; ``(response, keep_alive)``."""
    first = True
    while True:
        try:
            head = await conn.read_until(b"\r\n\r\n", _MAX_HEAD)
        except HTTPTransportError:
            if first and conn.eof and not conn.buffer:  # not one byte of an answer: the server dropped it
                raise _ClosedBeforeResponse(f"the connection closed before a response ({conn.error!r})") from None
            raise
        http11, status, headers = _parse_head(head)
        if status >= 200:
            break
        if status == 101:
            raise HTTPTransportError("unexpected 101 Switching Protocols")
        first = False  # 1xx interim responses (RFC 9110 §15.2): skip, the final one follows
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep = "close" not in tokens if http11 else "keep-alive" in tokens
    transfer = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if transfer is not None:
        if transfer.rpartition(",")[2].strip().lower() == "chunked":
            body = await _read_chunked(conn, limit)
        else:  # RFC 9112 §6.3 (4): not chunked last -> the body runs to the end of the connection
            body = await conn.read_to_eof(limit)
        if length is not None:  # §6.3 (3): both framings present -> must close afterwards
            keep = False
    elif status in (204, 304) or method == "HEAD":
        body = b""
    elif length is not None:
        values = {v.strip() for v in length.split(",")}
        value = values.pop()
        if values or not value.isdigit():
            raise HTTPTransportError(f"invalid Content-Length {length!r}")
        size = int(value)
        if size > limit:
            raise ResponseTooLarge(f"response body of {size} bytes is over {limit}")
        body = await conn.read_exactly(size)
    else:
        body = await conn.read_to_eof(limit)
        keep = False
    if "content-encoding" in headers:
        body = _decode(body, headers["content-encoding"], limit)
    return Response(status, headers, body), keep


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in ":\r\n \t") or "\r" in value or "\n" in value:
        raise HTTPTransportError(f"invalid request header {name!r}")


class AsyncHTTPClient:
    """Keep-alive HTTP/1.1 client for one origin; see the module docstring for what it supports.

    ``base_url`` may carry a path prefix (``https://x402.org/facilitator``) that every request path is
    appended to, a query kept on every request, and ``user:password@`` sent as Basic auth.
    ``verify`` is ``True`` (system CAs), ``False`` (no check; tests only) or an ``ssl.SSLContext``.

        client = AsyncHTTPClient("http://127.0.0.1:8545", max_connections=8)
        response = await client.request("POST", "", body=b'{"jsonrpc":"2.0",...}', idempotent=True)
    """

    def __init__(self, base_url: str, *, timeout: float = 30.0, max_connections: int = 64,
                 keepalive_expiry: float = KEEPALIVE_EXPIRY, max_response_size: int = MAX_RESPONSE_SIZE,
                 verify: ssl.SSLContext | bool = True, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {base_url!r} must be http:// or https:// with a host")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.base_url = base_url
        self.timeout = timeout
        self.keepalive_expiry = keepalive_expiry
        self.max_response_size = max_response_size
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = _ssl_context(verify) if parts.scheme == "https" else None
        self._root = parts.path or "/"  # the target of path "" exactly as given (a JSON-RPC URL's "/rpc/" stays)
        self._prefix = parts.path.rstrip("/")  # what a path "/verify" is appended to
        self._query = f"?{parts.query}" if parts.query else ""
        host = self._host.encode("idna").decode("ascii") if not self._host.isascii() else self._host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None and parts.port != (443 if self._ssl else 80):
            host = f"{host}:{parts.port}"
        self._defaults: dict[str, tuple[str, str]] = {
            "host": ("Host", host), "user-agent": ("User-Agent", _USER_AGENT), "accept": ("Accept", "application/json")}
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._defaults["authorization"] = ("Authorization", "Basic " + base64.b64encode(userinfo.encode()).decode())
        for name, value in (headers or {}).items():
            _check_header(name, value)
            self._defaults[name.lower()] = (name, value)
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use, or use from another event loop (``asyncio.run`` per call, a test per loop): the old
        loop's connections cannot be used from this one, so they are abandoned (aborted if still possible)."""
        for conn in self._connections:
            try:
                conn.abort()
            except RuntimeError:  # that loop is closed: its sockets were closed with it
                pass
        self._connections.clear()
        self._idle.clear()
        self._slots = asyncio.Semaphore(self._max_connections)
        self._loop = loop

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

    async def request(self, method: str, path: str = "", *, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None, idempotent: bool = False,
                      timeout: float | None = None) -> Response:
        """Send one request and read the whole response; raises :class:`HTTPTransportError`.

        ``path`` is appended to the base URL's path. ``idempotent=True`` allows one retry on a fresh
        connection when a reused keep-alive connection turns out closed before any response byte arrived
        (the server dropped it as we sent); never set it for calls that must not run twice (``/settle``).
        ``timeout`` (default: the client's) bounds the whole call, waiting for a connection included.
        """
        if self._closed:
            raise HTTPTransportError("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        data = self._head(method, path, body, headers)
        if body:
            data += body
        seconds = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(seconds):
                async with self._slots:
                    return await self._exchange(method, data, idempotent)
        except TimeoutError:
            raise HTTPTransportError(f"no complete response within {seconds} s") from None

    async def _exchange(self, method: str, data: bytes, idempotent: bool) -> Response:
        conn = self._checkout()
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect()
            try:
                try:
                    assert conn.transport is not None
                    conn.transport.write(data)
                except (RuntimeError, OSError) as exc:  # uvloop raises on a transport closed under us
                    raise _ClosedBeforeResponse(f"the connection closed before the request was sent: {exc!r}")
                response, keep = await _read_response(conn, method, self.max_response_size)
            except _ClosedBeforeResponse:
                self._drop(conn, abort=True)
                if reused and idempotent:  # once, on a fresh connection
                    conn, reused = None, False
                    continue
                raise
            except BaseException:  # timeout, cancellation, protocol error: the connection's state is unknown
                self._drop(conn, abort=True)
                raise
            if keep and not self._closed and conn.reusable():
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                self._drop(conn)
            return response

    def _checkout(self) -> _Connection | None:
        """The most recently used idle connection still worth using (LIFO keeps few connections warm)."""
        idle = self._idle
        if not idle:
            return None
        deadline = time.monotonic() - self.keepalive_expiry
        while idle and idle[0].idle_since < deadline:  # oldest first
            self._drop(idle.popleft())
        while idle:
            conn = idle.pop()
            if conn.reusable():
                return conn
            self._drop(conn)
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection, self._host, self._port, ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None)
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS and certificate errors
            raise HTTPTransportError(f"cannot connect to {self._host}:{self._port}: {exc!r}") from exc
        if self._closed:
            conn.abort()
            raise HTTPTransportError("the HTTP client is closed")
        self._connections.add(conn)
        return conn

    def _drop(self, conn: _Connection, *, abort: bool = False) -> None:
        self._connections.discard(conn)
        if abort:
            conn.abort()
        else:
            conn.close()

    @property
    def open_connections(self) -> int:
        """Connections currently open (idle or in use)."""
        return len(self._connections)

    async def aclose(self) -> None:
        """Close every connection (requests still running fail) and refuse new requests."""
        self._closed = True
        connections = list(self._connections)
        self._connections.clear()
        self._idle.clear()
        for conn in connections:
            conn.close()
        pending = [conn.closed for conn in connections if not conn.closed.done()]
        if pending:  # a TLS close waits for the peer's close_notify: bounded, then abort
            _, late = await asyncio.wait(pending, timeout=1.0)
            for conn in connections:
                if conn.closed in late:
                    conn.abort()
