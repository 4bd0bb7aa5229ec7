"""An httpx transport on our own asyncio HTTP/1.1 connection pool: the httpx API without httpcore.

httpcore's pool costs 1.7–4 ms of CPU per request under concurrency (encode/httpx#3215); a server that calls
another service on every request (an AI gateway calling its LLM upstream) spends most of its CPU there. This
transport keeps ``httpx.AsyncClient`` -- its request building, ``json=``, headers, ``stream=True``,
``aiter_bytes``/``aiter_lines``, content decoding, exceptions and per-phase ``httpx.Timeout`` -- and replaces only
the connection layer with :mod:`x402_middleware._http1` (the one the facilitator client uses)::

    import httpx
    from x402_middleware.transport import AsyncHTTP1Transport

    async with httpx.AsyncClient(transport=AsyncHTTP1Transport(max_connections=64)) as client:
        response = await client.post("https://api.example/v1/chat", json={...}, timeout=httpx.Timeout(60, connect=5))
        async with client.stream("GET", "https://api.example/events") as stream:
            async for line in stream.aiter_lines():
                ...

What it does not do: proxies (an ``httpx.AsyncClient`` given a ``transport`` ignores ``HTTP(S)_PROXY`` anyway;
:func:`uses_env_proxy` tells whether a URL needs one, and then httpx's default transport is the one to use) and
HTTP/2 (httpx's default transport does both). Choose it for many requests to a few HTTP/1.1 origins.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from ._http1 import (
    KEEPALIVE_EXPIRY,
    Body,
    ClosedBeforeResponse,
    ConnectFailed,
    Connection,
    ConnectTimedOut,
    Head,
    HTTPTransportError,
    Origin,
    Pool,
    PoolTimedOut,
    ReadFailed,
    ReadTimedOut,
    WriteFailed,
    WriteTimedOut,
    read_head,
    uses_env_proxy,
)

__all__ = ["AsyncHTTP1Transport", "uses_env_proxy"]

#: How long and how much :meth:`_ResponseStream.aclose` reads to finish a body the consumer stopped reading.
_DRAIN_SECONDS = 0.05
_DRAIN_BYTES = 64 * 1024
#: Methods a client may repeat on its own (RFC 9110 §9.2.2) when a kept-alive connection turned out closed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Our failures as the httpx exceptions httpcore raises for the same event (most specific first).
_MAPPING: tuple[tuple[type[HTTPTransportError], type[httpx.TransportError]], ...] = (
    (ConnectTimedOut, httpx.ConnectTimeout),
    (ConnectFailed, httpx.ConnectError),
    (PoolTimedOut, httpx.PoolTimeout),
    (ReadTimedOut, httpx.ReadTimeout),
    (WriteTimedOut, httpx.WriteTimeout),
    (ReadFailed, httpx.ReadError),
    (WriteFailed, httpx.WriteError),
)
_EMPTY = httpx.ByteStream(b"")


def _httpx_error(exc: HTTPTransportError, request: httpx.Request) -> httpx.TransportError:
    if isinstance(exc, ClosedBeforeResponse):
        if exc.reset:
            return httpx.ReadError(str(exc), request=request)
        return httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
    for ours, theirs in _MAPPING:
        if isinstance(exc, ours):
            return theirs(str(exc), request=request)
    return httpx.RemoteProtocolError(str(exc), request=request)  # malformed answer, closed mid-body


class AsyncHTTP1Transport(httpx.AsyncBaseTransport):
    """``httpx.AsyncBaseTransport`` over keep-alive HTTP/1.1 connections (http and https, any origin).

    ``verify``: ``True`` (system CAs, certifi's if none), ``False`` (no check) or an ``ssl.SSLContext``.
    ``max_connections``: requests in flight (and connections open) at once over all origins; more wait, up to
    the request's pool timeout (``httpx.PoolTimeout``). ``keepalive_expiry``: seconds an idle connection is
    kept (default 4 s, below the 5 s after which uvicorn closes one).

    Timeouts come from the request (``httpx.Timeout``): connect (TCP + TLS), pool (waiting for a slot),
    read (each wait for response bytes), write (each wait for the peer to take request bytes); ``None`` = no
    limit. Failures are the httpx exceptions httpcore raises for the same events. A response's connection goes
    back to the pool when its body has been read to the end; a response closed before that closes it.
    A ``GET``/``HEAD``/``PUT``/... request with a bytes body is sent once more on a fresh connection when a
    reused one turns out closed before any answer; a ``POST`` is never repeated.

        client = httpx.AsyncClient(transport=AsyncHTTP1Transport(verify=ssl_context, max_connections=128))
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self._pool = Pool(max_connections=max_connections, keepalive_expiry=keepalive_expiry, verify=verify)

    @property
    def open_connections(self) -> int:
        """Connections currently open (idle or in use)."""
        return self._pool.open_connections

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{scheme!r} URLs are not supported (http and https only)", request=request)
        tls = scheme == "https"
        origin: Origin = (url.raw_host.decode("ascii"), url.port or (443 if tls else 80), tls)  # IDNA: punycode
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        method = request.method
        try:
            content: bytes | None = request.content
        except httpx.RequestNotRead:
            content = None  # a streamed body: sent chunked unless the caller set Content-Length
        head, chunked, close = _request_head(request, content)
        pool = self._pool
        pool.bind()
        try:
            slots = await pool.acquire(timeouts.get("pool"))
        except HTTPTransportError as exc:
            raise _httpx_error(exc, request) from exc
        conn: Connection | None = None
        try:
            conn = pool.checkout(origin)
            retry = conn is not None and content is not None and method in _IDEMPOTENT
            while True:
                if conn is None:
                    conn = await pool.connect(origin, timeouts.get("connect"))
                conn.read_timeout = timeouts.get("read")
                try:
                    await _send(conn, head, content, request, chunked, timeouts.get("write"))
                    response_head = await read_head(conn)
                except ClosedBeforeResponse:
                    pool.drop(conn, abort=True)
                    conn = None
                    if retry:  # once, on a fresh connection
                        retry = False
                        continue
                    raise
                break
            body = Body(conn, response_head, method)
        except BaseException as exc:
            if conn is not None:
                pool.drop(conn, abort=True)
            pool.release(slots)
            if isinstance(exc, HTTPTransportError):
                raise _httpx_error(exc, request) from exc
            raise
        keep = body.keep and not close
        stream: httpx.AsyncByteStream
        if body.done:
            pool.put_back(conn, keep)
            pool.release(slots)
            stream = _EMPTY
        else:
            stream = _ResponseStream(pool, slots, conn, body, keep, request)
        return httpx.Response(
            response_head.status, headers=response_head.fields, stream=stream, extensions=_extensions(response_head)
        )

    async def aclose(self) -> None:
        """Close every connection; requests still running fail, new ones raise ``RemoteProtocolError``."""
        await self._pool.aclose()


def _extensions(head: Head) -> dict[str, Any]:
    return {"http_version": b"HTTP/1.1" if head.http11 else b"HTTP/1.0", "reason_phrase": head.reason}


def _request_head(request: httpx.Request, content: bytes | None) -> tuple[bytes, bool, bool]:
    """``(head bytes, body is chunked, Connection: close asked)`` for an httpx request (RFC 9112 §3, §6)."""
    url = request.url
    raw = request.headers.raw
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
    has_host = has_length = close = False
    chunked = False
    for i, (name, value) in enumerate(raw):
        if not name or name != name.strip() or b":" in name:
            _check_headers(raw[: i + 1], request)  # raises, for the first invalid header as it comes
        key = name.lower()
        if key == b"host":
            has_host = True
        elif key == b"content-length":
            has_length = True
        elif key == b"transfer-encoding":
            chunked = value.rpartition(b",")[2].strip().lower() == b"chunked"
            if not chunked:
                _check_headers(raw[: i + 1], request)  # an invalid header up to this one is the error to report
                raise httpx.LocalProtocolError("only Transfer-Encoding: chunked is supported", request=request)
        elif key == b"connection":
            close = b"close" in value.lower()
        lines.append(b"%s: %s\r\n" % (name, value))
    fields = b"".join(lines)
    # No CR, LF or NUL inside a name or value (RFC 9110 §5.5): checked once over the whole block -- exactly one
    # CR and one LF per line -- instead of three searches per header; any doubt redoes it header by header.
    if b"\0" in fields or fields.count(b"\n") != len(lines) or fields.count(b"\r") != len(lines):
        _check_headers(raw, request)
    extra = []
    if not has_host:  # httpx always sets it; a hand-built request may not
        fields = lines[0] + b"Host: %s\r\n" % url.netloc + fields[len(lines[0]) :]
    if not has_length and not chunked:
        if content is None:
            extra.append(b"Transfer-Encoding: chunked\r\n")
            chunked = True
        elif content:
            extra.append(b"Content-Length: %d\r\n" % len(content))
    return fields + b"".join(extra) + b"\r\n", chunked, close


def _check_headers(raw: list[tuple[bytes, bytes]], request: httpx.Request) -> None:
    """Raise for the first invalid header: a value with CR, LF or NUL (request smuggling, RFC 9112 §11.2), or an
    empty name, one with a colon or surrounding whitespace."""
    for name, value in raw:
        if b"\r" in value or b"\n" in value or b"\0" in value or not name or b":" in name or name != name.strip():
            raise httpx.LocalProtocolError(f"invalid request header {name!r}", request=request)


async def _send(
    conn: Connection, head: bytes, content: bytes | None, request: httpx.Request, chunked: bool, timeout: float | None
) -> None:
    """Write the request: one write for a bytes body, else the stream's pieces as they come (flow-controlled)."""
    if content is not None:
        if chunked:
            conn.write(b"%s%x\r\n%s\r\n0\r\n\r\n" % (head, len(content), content) if content else head + b"0\r\n\r\n")
        elif len(content) <= 65536:
            conn.write(head + content)  # one write, one syscall for the usual small body
        else:
            conn.write(head)
            conn.write(content)  # no copy of a large body
        await conn.drain(timeout)
        return
    conn.write(head)
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("AsyncHTTP1Transport needs an async request stream")
    async for piece in stream:
        if piece:
            conn.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else bytes(piece))
            await conn.drain(timeout)
    if chunked:
        conn.write(b"0\r\n\r\n")
    await conn.drain(timeout)


class _ResponseStream(httpx.AsyncByteStream):
    """A response body as httpx reads it: pieces as they arrive; the connection is reused only if read to the end."""

    __slots__ = ("_body", "_conn", "_keep", "_pool", "_request", "_slots")

    def __init__(
        self, pool: Pool, slots: asyncio.Semaphore, conn: Connection, body: Body, keep: bool, request: httpx.Request
    ) -> None:
        self._pool = pool
        self._slots = slots
        self._conn: Connection | None = conn
        self._body = body
        self._keep = keep
        self._request = request

    def __aiter__(self) -> _ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        if self._conn is None:
            raise StopAsyncIteration
        body = self._body
        try:
            data = await body.read()
        except BaseException as exc:  # timeout, reset, cancellation: the connection's state is unknown
            self._finish(keep=False)
            if isinstance(exc, HTTPTransportError):
                raise _httpx_error(exc, self._request) from exc
            raise
        if body.done:
            self._finish(keep=self._keep)
            if not data:
                raise StopAsyncIteration
        return data

    def _finish(self, keep: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if keep:
            self._pool.put_back(conn, True)
        else:
            self._pool.drop(conn, abort=True)
        self._pool.release(self._slots)

    async def aclose(self) -> None:
        """Stop reading: the connection is reused only if the rest of the body arrives at once, else closed.

        Consumers often stop just before the end -- an SSE reader stops at ``data: [DONE]`` while the last
        chunk's terminator (``0\r\n\r\n``) is still in flight -- and closing there would cost a new
        connection (and TLS handshake) per stream. So a short, bounded drain runs first.
        """
        if self._conn is not None and self._keep:
            body = self._body
            try:
                async with asyncio.timeout(_DRAIN_SECONDS):
                    left = _DRAIN_BYTES
                    while not body.done and left > 0:
                        left -= len(await body.read(left))
            except (TimeoutError, HTTPTransportError):
                pass
            finally:
                # cancelled or failed mid-read: the connection's state is unknown, so it is not reused
                self._finish(keep=body.done)
        self._finish(keep=False)
