"""HTTP/1.1 client connections on asyncio, under the facilitator's JSON client.

One user: :class:`~x402_middleware.facilitator._http.AsyncHTTPClient` (whole responses, one origin, one total
timeout), for ``/settle`` and the settlement's JSON-RPC calls. Why our own code there: ``benchmarks/http_clients.py``
measured it at 1.6–2.3x less client CPU per call than the best library (aiohttp) and 7–38x less than httpx on
httpcore, whose pool re-scans every connection for every queued request (encode/httpx#3215); see
benchmarks/README.md. The example gateway's upstream calls, where it was not 1.3x better, use aiohttp.

What is here (RFC 9112):

* :class:`Connection` -- an ``asyncio.Protocol`` that buffers what arrives; reads wait with an optional per-read
  timeout (httpcore's "read" timeout), writes honour flow control (``drain``, the "write" timeout);
* :func:`read_head` and :class:`Body` -- the response head (1xx skipped) and the body in pieces as they arrive,
  framed by ``Content-Length``, ``Transfer-Encoding: chunked`` (extensions and trailers skipped) or the end of the
  connection; ``keep`` says whether the connection may carry another request afterwards;
* :class:`Pool` -- LIFO keep-alive connections per origin, at most ``max_connections`` in use at once (a request
  holds a slot from before it is sent until its body is read or dropped), idle expiry, connections the server
  closed while idle dropped before reuse.

Failures are :class:`HTTPTransportError`; its subclasses name the phase (connect, pool, read, write; malformed
answers and closes are the base class).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
import urllib.request
from collections import deque
from urllib.parse import urlsplit

__all__ = [
    "KEEPALIVE_EXPIRY",
    "Body",
    "ClosedBeforeResponse",
    "ConnectFailed",
    "ConnectTimedOut",
    "Connection",
    "HTTPTransportError",
    "Head",
    "Origin",
    "Pool",
    "PoolTimedOut",
    "ReadFailed",
    "ReadTimedOut",
    "WriteFailed",
    "WriteTimedOut",
    "read_head",
    "ssl_context",
    "uses_env_proxy",
]

KEEPALIVE_EXPIRY = 4.0  # seconds; below uvicorn's and most servers' 5 s so we rarely race their close
MAX_HEAD = 64 * 1024  # status line + headers
MAX_LINE = 4096  # one chunk-size or trailer line
_HEX = b"0123456789abcdefABCDEF"

#: (host, port, tls): where a connection goes. The host is what TLS checks the certificate against.
Origin = tuple[str, int, bool]


class HTTPTransportError(Exception):
    """No usable HTTP response: connect failure, timeout, reset, malformed or oversized answer.

    Internal: :class:`~x402_middleware.facilitator.HTTPFacilitator` and the chain RPC client turn it
    into :class:`~x402_middleware.FacilitatorError`, as they do with ``httpx.HTTPError``; the httpx
    transport into the ``httpx`` exception of its subclass (protocol error for the base class).
    """


class ConnectFailed(HTTPTransportError):
    """TCP connect, DNS or TLS handshake failed (httpx: ``ConnectError``)."""


class ConnectTimedOut(ConnectFailed):
    """The connect timeout passed before the connection (and its TLS handshake) was up (``ConnectTimeout``)."""


class PoolTimedOut(HTTPTransportError):
    """Every connection slot stayed in use for the whole pool timeout (``PoolTimeout``)."""


class ReadTimedOut(HTTPTransportError):
    """No byte arrived within the read timeout (``ReadTimeout``)."""


class WriteTimedOut(HTTPTransportError):
    """The peer did not take the request bytes within the write timeout (``WriteTimeout``)."""


class ReadFailed(HTTPTransportError):
    """The connection broke with an OS error (reset) while reading (``ReadError``)."""


class WriteFailed(HTTPTransportError):
    """The connection broke or was closed while sending (``WriteError``)."""


class ClosedBeforeResponse(HTTPTransportError):
    """The connection ended before the first byte of a response (a kept-alive connection the server closed).

    ``reset`` is true when it ended with an OS error (a reset: httpx ``ReadError``) rather than a clean close
    (``RemoteProtocolError``, "Server disconnected without sending a response.", as httpcore says).
    """

    def __init__(self, message: str, *, reset: bool = False) -> None:
        super().__init__(message)
        self.reset = reset


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uses_env_proxy(url: str) -> bool:
    """True when ``HTTP(S)_PROXY``/``ALL_PROXY`` (any case) apply to ``url`` and ``NO_PROXY`` does not exclude it.

    Callers then keep httpx's own transport, which speaks to proxies; loopback hosts are always direct.
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


def ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The context for ``verify``: as given, the system CAs (certifi's bundle if none load), or no checks."""
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


class Connection(asyncio.Protocol):
    """One TCP/TLS connection: buffers what arrives and lets one request at a time read it.

    ``read_timeout`` (seconds, ``None`` = no limit) bounds each wait for more bytes, as httpcore's read timeout does.
    """

    def __init__(self, origin: Origin) -> None:
        loop = asyncio.get_running_loop()
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.idle_since = 0.0
        self.read_timeout: float | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None

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
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(WriteFailed(f"connection lost while sending: {exc!r}"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by clients ---------------------------------------------------------------------------
    def reusable(self) -> bool:
        """Still open, nothing unread (a server's 408 or a close it sent while idle makes it unusable)."""
        return not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def write(self, data: bytes) -> None:
        """Queue bytes to send; :class:`WriteFailed` if the connection is closed."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise WriteFailed("the connection is closed")
        try:
            transport.write(data)
        except (RuntimeError, OSError) as exc:  # uvloop raises on a transport closed under us
            raise WriteFailed(f"cannot send: {exc!r}") from exc

    async def drain(self, timeout: float | None) -> None:
        """Wait until the kernel takes what is queued (flow control), at most ``timeout`` seconds."""
        if not self._paused:
            return
        if self.closed.done():
            raise WriteFailed(f"connection lost while sending: {self.error!r}")
        drain = self._drain = asyncio.get_running_loop().create_future()
        try:
            await _bounded(drain, timeout, WriteTimedOut, "the request was not sent")
        finally:
            self._drain = None

    async def wait(self) -> None:
        """Wait until more bytes or the end of the connection arrive (at most ``read_timeout`` seconds)."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await _bounded(waiter, self.read_timeout, ReadTimedOut, "no response data")
        finally:
            self._waiter = None

    def _lost(self) -> HTTPTransportError:
        if self.error is not None:
            return ReadFailed(f"connection lost mid-response: {self.error!r}")
        return HTTPTransportError("the server closed the connection mid-response")

    async def more(self) -> None:
        """Like :meth:`wait`, but the end of the connection is an error (more bytes were due)."""
        if self.eof:
            raise self._lost()
        await self.wait()

    async def read_until(self, marker: bytes, limit: int) -> bytes:
        """Bytes up to ``marker`` (consumed, not returned)."""
        start = 0
        while True:
            index = self.buffer.find(marker, start)
            if index >= 0:
                data = bytes(self.buffer[:index])
                del self.buffer[: index + len(marker)]
                return data
            if len(self.buffer) > limit:
                raise HTTPTransportError(f"response line or head longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            await self.more()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self.more()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` buffered bytes (all of them when they fit)."""
        buffer = self.buffer
        if len(buffer) <= limit:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:limit])
            del buffer[:limit]
        return data


async def _bounded(
    future: asyncio.Future[None], timeout: float | None, error: type[HTTPTransportError], what: str
) -> None:
    """Await ``future``; ``error`` if it is not done within ``timeout`` seconds (a timer, cheaper than a task)."""
    if timeout is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future, error, what, timeout)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None], error: type[HTTPTransportError], what: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(error(f"{what} within {timeout} s"))


class Head:
    """A response's status line and header fields (RFC 9112 §4, §5).

    ``fields`` are the raw ``(name, value)`` pairs in order (for httpx); ``headers`` maps lower-case names to
    values, repeated fields joined with ``", "``.
    """

    __slots__ = ("fields", "headers", "http11", "reason", "status")

    def __init__(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit() or rest[3:4] not in b" ":
            raise HTTPTransportError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        fields: list[tuple[bytes, bytes]] = []
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise HTTPTransportError(f"malformed response header line: {line[:80]!r}")
            value = value.strip()
            fields.append((name, value))
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.http11 = version == b"HTTP/1.1"
        self.status = int(code)
        self.reason = rest[4:]
        self.fields = fields
        self.headers = headers


async def read_head(conn: Connection) -> Head:
    """The final response head; 1xx interim responses (RFC 9110 §15.2) are skipped.

    Raises :class:`ClosedBeforeResponse` when the connection ended before one byte of a response.
    """
    first = True
    while True:
        try:
            raw = await conn.read_until(b"\r\n\r\n", MAX_HEAD)
        except HTTPTransportError:
            if first and conn.eof and not conn.buffer:  # not one byte of an answer: the server dropped it
                raise ClosedBeforeResponse(
                    f"the connection closed before a response ({conn.error!r})", reset=conn.error is not None
                ) from None
            raise
        head = Head(raw)
        if head.status >= 200:
            return head
        if head.status == 101:
            raise HTTPTransportError("unexpected 101 Switching Protocols")
        first = False


_NONE, _LENGTH, _CHUNKED, _EOF = range(4)


class Body:
    """A response body read in pieces as they arrive (RFC 9112 §6.3); content codings are left to the caller.

    :meth:`read` returns the next piece, ``b""`` once the body is complete; ``done`` is then true and ``keep``
    says whether the connection may carry another request. ``length`` is the ``Content-Length`` (else ``None``).
    """

    __slots__ = ("_conn", "_crlf", "_kind", "_left", "done", "keep", "length")

    def __init__(self, conn: Connection, head: Head, method: str) -> None:
        headers = head.headers
        connection = headers.get("connection")
        tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
        self.keep = "close" not in tokens if head.http11 else "keep-alive" in tokens
        self._conn = conn
        self._crlf = False  # a chunk's data was read; its CRLF is next
        self._left = 0
        self.length: int | None = None
        self.done = False
        transfer = headers.get("transfer-encoding")
        length = headers.get("content-length")
        status = head.status
        if status in (204, 304) or method == "HEAD":  # §6.3 (1): no body whatever the headers say
            self._kind = _NONE
        elif transfer is not None:
            # §6.3 (4): chunked last -> chunked, else the body runs to the end of the connection
            self._kind = _CHUNKED if transfer.rpartition(",")[2].strip().lower() == "chunked" else _EOF
            if length is not None or self._kind == _EOF:  # §6.3 (3): both framings present -> close afterwards
                self.keep = False
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            value = values.pop()
            if values or not value.isdigit():
                raise HTTPTransportError(f"invalid Content-Length {length!r}")
            self._kind = _LENGTH
            self._left = self.length = int(value)
        else:
            self._kind = _EOF
            self.keep = False
        if self._kind == _NONE or (self._kind == _LENGTH and not self._left):
            self.done = True

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The next piece of the body (at most ``limit`` bytes), ``b""`` once it is complete."""
        if self.done:
            return b""
        conn = self._conn
        kind = self._kind
        if kind == _LENGTH:
            if not conn.buffer:
                await conn.more()
            data = conn.take(min(self._left, limit))
            self._left -= len(data)
            self.done = not self._left
            return data
        if kind == _EOF:
            while not conn.buffer:
                if conn.eof:
                    if conn.error is not None:
                        raise ReadFailed(f"connection lost mid-response: {conn.error!r}")
                    self.done = True
                    return b""
                await conn.wait()
            return conn.take(limit)
        if not self._left and not await self._next_chunk():
            return b""
        if not conn.buffer:
            await conn.more()
        data = conn.take(min(self._left, limit))
        self._left -= len(data)
        self._crlf = not self._left
        return data

    async def _next_chunk(self) -> bool:
        """Read up to the next chunk's data; ``False`` (and ``done``) after the last chunk and the trailers."""
        conn = self._conn
        if self._crlf:
            if await conn.read_exactly(2) != b"\r\n":
                raise HTTPTransportError("chunk not followed by CRLF")
            self._crlf = False
        line = await conn.read_until(b"\r\n", MAX_LINE)
        size_text = line.partition(b";")[0].strip()  # chunk extensions are skipped (§7.1.1)
        if not size_text or size_text.strip(_HEX):
            raise HTTPTransportError(f"bad chunk size line {line[:40]!r}")
        self._left = int(size_text, 16)
        if self._left:
            return True
        trailer_bytes = 0
        while line := await conn.read_until(b"\r\n", MAX_LINE):  # trailers (§7.1.2): skipped
            trailer_bytes += len(line)
            if trailer_bytes > MAX_HEAD:
                raise HTTPTransportError("response trailers too long")
        self.done = True
        return False


class Pool:
    """Keep-alive connections per origin: LIFO reuse, at most ``max_connections`` requests in flight.

    A request takes a slot (:meth:`acquire`), reuses an idle connection (:meth:`checkout`) or opens one
    (:meth:`connect`), and gives both back when its response is read (:meth:`put_back` or :meth:`drop`,
    then :meth:`release`). Open connections never exceed ``max_connections``: a new one replaces the oldest
    idle connection of another origin when needed. ``verify`` applies to every https origin.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float, verify: ssl.SSLContext | bool = True) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None  # made on the first https connection (loading CAs costs ~25 ms)
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, deque[Connection]] = {}
        self._connections: set[Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def bind(self) -> None:
        """Call first in each request: on another event loop than before (``asyncio.run`` per call, a test per
        loop) the old loop's connections cannot be used, so they are abandoned (aborted if still possible)."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        for conn in self._connections:
            try:
                conn.abort()
            except RuntimeError:  # that loop is closed: its sockets were closed with it
                pass
        self._connections.clear()
        self._idle.clear()
        self._slots = asyncio.Semaphore(self.max_connections)
        self._loop = loop

    async def acquire(self, timeout: float | None = None) -> asyncio.Semaphore:
        """Take a slot, waiting at most ``timeout`` seconds (:class:`PoolTimedOut`); pass the result to :meth:`release`."""
        if self.closed:
            raise HTTPTransportError("the HTTP client is closed")
        slots = self._slots
        if timeout is None or not slots.locked():
            await slots.acquire()
            return slots
        try:
            async with asyncio.timeout(timeout):
                await slots.acquire()
        except TimeoutError:
            raise PoolTimedOut(f"no free connection within {timeout} s") from None
        return slots

    @staticmethod
    def release(slots: asyncio.Semaphore) -> None:
        slots.release()

    def checkout(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection to ``origin`` still worth using (LIFO keeps few warm)."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        deadline = time.monotonic() - self.keepalive_expiry
        while idle and idle[0].idle_since < deadline:  # oldest first
            self.drop(idle.popleft())
        while idle:
            conn = idle.pop()
            if conn.reusable():
                return conn
            self.drop(conn)
        return None

    async def connect(self, origin: Origin, timeout: float | None = None) -> Connection:
        """A new connection (TLS when ``origin`` says so), within ``timeout`` seconds (:class:`ConnectTimedOut`)."""
        if len(self._connections) >= self.max_connections:
            self._evict_idle()
        host, port, tls = origin
        context = None
        if tls:
            if self._ssl is None:
                self._ssl = ssl_context(self._verify)
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(origin), host, port, ssl=context, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise ConnectTimedOut(f"cannot connect to {host}:{port} within {timeout} s") from None
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS and certificate errors
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc!r}") from exc
        if self.closed:
            conn.abort()
            raise HTTPTransportError("the HTTP client is closed")
        self._connections.add(conn)
        return conn

    def _evict_idle(self) -> None:
        """Close the longest-idle connection of any origin to make room for a new one."""
        oldest: deque[Connection] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is not None:
            self.drop(oldest.popleft())

    def put_back(self, conn: Connection, keep: bool) -> None:
        """After a complete response: keep the connection for reuse when it may be, else close it."""
        if keep and not self.closed and conn.reusable() and conn in self._connections:
            conn.idle_since = time.monotonic()
            conn.read_timeout = None
            idle = self._idle.get(conn.origin)
            if idle is None:
                idle = self._idle[conn.origin] = deque()
            idle.append(conn)
        else:
            self.drop(conn)

    def drop(self, conn: Connection, *, abort: bool = False) -> None:
        """Close a connection (``abort``: at once, unread data and all) and forget it."""
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
        self.closed = True
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
