"""How the providers send a request upstream: one shared ``aiohttp.ClientSession``, public API only.

Why aiohttp: ``benchmarks/http_clients.py`` measured the gateway's upstream calls (non-streamed JSON and a ~40-event
SSE stream from the emulator) with httpx (httpcore), httpx over ``httpx-aiohttp``, httpx2, aiohttp and the package's
own HTTP/1.1 stack in one run; aiohttp's session cost 1.05-1.08x the own stack's client CPU per JSON call and the
least per stream, httpx's default transport 4.8-17x (benchmarks/README.md). So the gateway uses the library, with
its C parser and pool, instead of a hand-written HTTP client. One code path with and without proxies:
``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` are read once per endpoint URL and passed as ``proxy=`` (``None``: direct).
Not ``trust_env=True``: aiohttp then reads ``~/.netrc`` and the environment on every request, ~0.25 ms each.

:class:`Upstream` keeps what never changes per endpoint (the provider's headers, the URL, the timeouts) and hands
back an :class:`UpstreamResponse`: ``status_code``, ``headers``, ``content`` (after a non-streamed call),
``elapsed``, ``aiter_lines()``/``aiter_bytes()`` for a stream and ``aclose()``. Content codings (gzip, deflate,
and br/zstd when their decoders are installed) are undone by aiohttp. Failures are ``aiohttp.ClientError`` or
``TimeoutError`` (aiohttp's timeouts subclass it; :func:`is_connect_timeout` tells a connect timeout apart)::

    upstream = Upstream(session)
    response = await upstream.post(provider, endpoint, url, payload, timeouts.total, timeouts.connect, stream=False)
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDictProxy
from yarl import URL

if TYPE_CHECKING:
    from .base import Endpoint, Provider

#: Bounds the per-(endpoint, URL) cache; the catalog keeps it far smaller (endpoints x Gemini model URLs).
_MAX_CACHED = 4096
#: How long and how much :meth:`UpstreamResponse.aclose` reads to finish a stream its reader left early: an SSE
#: reader stops at ``data: [DONE]`` while the chunked terminator may still be in flight, and closing there would
#: cost a new connection (and TLS handshake) per stream.
_DRAIN_SECONDS = 0.05
_DRAIN_BYTES = 64 * 1024
#: Read buffer per connection; a line (one SSE ``data:`` field) may be up to twice this long.
_READ_BUFSIZE = 256 * 1024
#: What a broken or malformed upstream answer raises while it is read (line too long: ``HttpProcessingError``).
STREAM_ERRORS = (aiohttp.ClientError, HttpProcessingError)

#: ``json.dumps(..., ensure_ascii=False, separators=(",", ":"), allow_nan=False)`` builds this encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON (``ensure_ascii=False``, ``allow_nan=False``): a non-finite float raises ``ValueError``.

    Also the bytes Starlette's ``JSONResponse`` renders (same options), so the gateway's answers use it too.
    """
    return _ENCODER.encode(payload).encode("utf-8")


def is_connect_timeout(exc: BaseException) -> bool:
    """True for a timeout while connecting (TCP + TLS), as opposed to one waiting for the answer."""
    return isinstance(exc, aiohttp.ConnectionTimeoutError)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # httpx's default trust (certifi's CA bundle); loading it costs ~25 ms, so one context per process.
    return httpx.create_ssl_context()


def session(ssl_context: ssl.SSLContext | bool | None = None, *, max_connections: int = 512) -> aiohttp.ClientSession:
    """A gateway session: ``max_connections`` in flight, idle connections kept 30 s, env proxies; call on a loop."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=30, ssl=_ssl_context() if ssl_context is None else ssl_context
        ),
        read_bufsize=_READ_BUFSIZE,
        timeout=aiohttp.ClientTimeout(total=None),
        # One session serves every caller: an upstream's cookies must not carry from one caller's call to the next
        # (and filtering and storing them was work on every request).
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class UpstreamResponse:
    """An upstream answer over aiohttp's public API; ``content`` is the body once a non-streamed call read it."""

    __slots__ = ("_response", "content", "elapsed", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse, started: float) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.content = b""
        self.elapsed = time.perf_counter() - started  # seconds until the response head; the body adds to it

    async def read(self) -> bytes:
        self.content = await self._response.read()
        return self.content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The (decoded) body in pieces as they arrive."""
        async for piece in self._response.content.iter_any():
            yield piece

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines, decoded as UTF-8, each with its line break (``\\n`` or ``\\r\\n``)."""
        async for line in self._response.content:
            yield line.decode("utf-8", "replace")

    async def aclose(self) -> None:
        """Give the connection back: after a short bounded drain when the body was not read to its end."""
        response = self._response
        content = response.content
        if not response.closed and not content.at_eof():
            try:
                async with asyncio.timeout(_DRAIN_SECONDS):
                    left = _DRAIN_BYTES
                    while left > 0 and not content.at_eof():
                        left -= len(await content.readany())
            except (TimeoutError, *STREAM_ERRORS):
                pass
            if not content.at_eof():  # not finished: the connection's state is unknown, so it is not reused
                response.close()
        response.release()


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY``/``ALL_PROXY`` (any case) name for ``url``, unless ``NO_PROXY`` excludes it."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    # the stdlib's own NO_PROXY matching (in CPython since 2.7, missing from typeshed)
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return None
    return proxy


class _Target:
    """One (provider, endpoint, URL): the URL, its proxy and the provider's headers, built once.

    A signed provider's URL is sent exactly as built (``encoded=True``): yarl would otherwise unquote ``%3A`` in
    a Bedrock model id such as ``anthropic.claude-...-v1:0``, and the signature covers the path as sent.
    """

    __slots__ = ("endpoint", "headers", "provider", "proxy", "url")

    def __init__(self, provider: Provider, endpoint: Endpoint, url: str) -> None:
        self.provider = provider  # kept so the ids in the cache key cannot be reused while the entry exists
        self.endpoint = endpoint
        self.url: str | URL = URL(url, encoded=True) if provider.signed else url
        self.proxy = env_proxy(url)
        self.headers: Mapping[str, str] = dict(provider.headers(endpoint))


class Upstream:
    """The shared ``aiohttp.ClientSession`` plus what requests reuse (URL and headers per endpoint, timeouts).

    ``client``: a session to use (the caller closes it); else one is made on first use, on the running loop, and
    made anew on another loop (``asyncio.run`` per call, a test per loop: the old loop's connections are unusable).
    """

    def __init__(self, client: aiohttp.ClientSession | None = None, *, max_connections: int = 512) -> None:
        self._given = client
        self._session = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_connections = max_connections
        self._targets: dict[tuple[int, int, str], _Target] = {}
        self._timeouts: dict[tuple[float, float, bool], aiohttp.ClientTimeout] = {}

    @property
    def client(self) -> aiohttp.ClientSession:
        """The session requests go through (the running loop's)."""
        current = self._session
        if self._given is None:
            loop = asyncio.get_running_loop()
            if current is None or self._loop is not loop or current.closed:
                current = self._session = session(max_connections=self._max_connections)
                self._loop = loop
        assert current is not None
        return current

    async def aclose(self) -> None:
        """Close the session this made (an injected one is its owner's to close)."""
        current, self._session = self._session, self._given
        if self._given is None and current is not None and self._loop is asyncio.get_running_loop():
            await current.close()

    def _target(self, provider: Provider, endpoint: Endpoint, url: str) -> _Target:
        key = (id(provider), id(endpoint), url)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_CACHED:
                self._targets.clear()
            target = self._targets[key] = _Target(provider, endpoint, url)
        return target

    def _timeout(self, seconds: float, connect: float, stream: bool) -> aiohttp.ClientTimeout:
        """``connect`` for TCP + TLS, ``seconds`` for a free connection (and connecting); then ``seconds`` for each
        read of a stream, or for the whole call when the body is read here (one timer, not one reset per read)."""
        key = (seconds, connect, stream)
        timeout = self._timeouts.get(key)
        if timeout is None:
            if stream:
                timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=connect, sock_read=seconds)
            else:
                timeout = aiohttp.ClientTimeout(total=seconds, connect=seconds, sock_connect=connect)
            self._timeouts[key] = timeout
        return timeout

    async def post(
        self,
        provider: Provider,
        endpoint: Endpoint,
        url: str,
        payload: Any,
        seconds: float,
        connect: float,
        *,
        stream: bool,
    ) -> UpstreamResponse:
        """``POST url`` with ``payload`` as JSON and the provider's headers; with ``stream=False`` the body is read,
        all within ``seconds``.

        A streamed response must be closed (:meth:`UpstreamResponse.aclose`). Never re-sent: a POST to an
        upstream that dropped a kept-alive connection fails, and the pool moves on to its next endpoint.
        """
        target = self._target(provider, endpoint, url)
        data = encode_json(payload)
        headers = provider.sign(endpoint, url, target.headers, data) if provider.signed else target.headers
        started = time.perf_counter()
        raw = await self.client.post(
            target.url,
            data=data,
            headers=headers,
            timeout=self._timeout(seconds, connect, stream),
            proxy=target.proxy,
        )
        response = UpstreamResponse(raw, started)
        if not stream:
            try:
                await response.read()
            finally:
                raw.release()
            response.elapsed = time.perf_counter() - started
        return response

    async def get(
        self, provider: Provider, endpoint: Endpoint, url: str, seconds: float, connect: float, *, stream: bool
    ) -> UpstreamResponse:
        """``GET url`` with the provider's headers (an async job's status or its file); as :meth:`post`."""
        target = self._target(provider, endpoint, url)
        started = time.perf_counter()
        headers = {k: v for k, v in target.headers.items() if k != "content-type"}
        raw = await self.client.get(
            target.url, headers=headers, timeout=self._timeout(seconds, connect, stream), proxy=target.proxy
        )
        response = UpstreamResponse(raw, started)
        if not stream:
            try:
                await response.read()
            finally:
                raw.release()
        return response
