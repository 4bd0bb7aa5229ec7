"""How the providers send a request upstream: httpx's client, with what never changes per endpoint built once.

Each upstream call used to parse its URL string, build and encode its header dict and a new ``httpx.Timeout``;
those depend only on the endpoint, the URL and the pool's timeouts, so :class:`Upstream` keeps them (the catalog
bounds how many). The JSON body is encoded exactly as httpx's ``json=`` would (compact, ``ensure_ascii=False``,
``allow_nan=False``), so the bytes on the wire do not change.

When the gateway built the client itself around an :class:`~x402_middleware.transport.AsyncHTTP1Transport`
(``transport=``), a request goes straight to that transport: the client adds nothing such a request needs (no
auth, hooks, base URL, params or redirects; its default headers are merged in once per endpoint), and its
request/response plumbing was half of the CPU an upstream call cost (README, Gateway). What ``client.send``
does per response is kept: ``response.request``, cookies into the client's jar, the ``httpx`` INFO log line,
and with ``stream=False`` the body read (the connection closed if that fails). A client with cookies in its jar,
a closed client, or one given by the user (no ``transport=``) goes through ``client.build_request`` +
``client.send`` as before::

    upstream = Upstream(client, transport)   # transport: the client's own AsyncHTTP1Transport, or None
    response = await upstream.post(provider, endpoint, url, payload, timeouts.total, timeouts.connect, stream=False)
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, cast

import httpx

if TYPE_CHECKING:
    from x402_middleware.transport import AsyncHTTP1Transport

    from .base import Endpoint, Provider

#: Bounds the per-(endpoint, URL) cache; the catalog keeps it far smaller (endpoints x Gemini model URLs).
_MAX_CACHED = 4096
_httpx_logger = logging.getLogger("httpx")  # the logger httpx's client writes "HTTP Request: ..." to


#: ``json.dumps(..., ensure_ascii=False, separators=(",", ":"), allow_nan=False)`` builds this encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(payload: Any) -> bytes:
    """The body httpx's ``json=`` sends (httpx 0.28 ``encode_json``): a non-finite float raises ``ValueError``.

    Also the bytes Starlette's ``JSONResponse`` renders (same options), so the gateway's answers use it too.
    """
    return _ENCODER.encode(payload).encode("utf-8")


class _Target:
    """One (provider, endpoint, URL): the parsed URL, the provider's headers, and the full headers of a direct send."""

    __slots__ = ("direct_headers", "endpoint", "headers", "provider", "url")

    def __init__(self, provider: Provider, endpoint: Endpoint, url: str, client: httpx.AsyncClient) -> None:
        self.provider = provider  # kept so the ids in the cache key cannot be reused while the entry exists
        self.endpoint = endpoint
        self.url = httpx.URL(url)
        self.headers = httpx.Headers(provider.headers(endpoint))
        # What client.build_request + httpx.Request would send: Host first, the client's defaults, ours over them.
        merged = httpx.Headers(client.headers)
        merged.update(self.headers)
        self.direct_headers = httpx.Headers([(b"Host", self.url.netloc), *merged.raw])


class Upstream:
    """The shared ``httpx.AsyncClient`` (and, when the gateway built it, its transport) plus what requests reuse."""

    def __init__(self, client: httpx.AsyncClient, transport: AsyncHTTP1Transport | None = None) -> None:
        self.client = client
        self._transport = transport
        self._targets: dict[tuple[int, int, str], _Target] = {}
        self._timeouts: dict[tuple[float, float], httpx.Timeout] = {}

    def _target(self, provider: Provider, endpoint: Endpoint, url: str) -> _Target:
        key = (id(provider), id(endpoint), url)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_CACHED:
                self._targets.clear()
            target = self._targets[key] = _Target(provider, endpoint, url, self.client)
        return target

    def _timeout(self, seconds: float, connect: float) -> httpx.Timeout:
        timeout = self._timeouts.get((seconds, connect))
        if timeout is None:
            timeout = self._timeouts[(seconds, connect)] = httpx.Timeout(seconds, connect=connect)
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
    ) -> httpx.Response:
        """``POST url`` with ``payload`` as JSON and the provider's headers, ``httpx.Timeout(seconds, connect=...)``.

        As ``client.send(request, stream=stream)``: with ``stream=False`` the body has been read.
        """
        target = self._target(provider, endpoint, url)
        body = encode_json(payload)
        timeout = self._timeout(seconds, connect)
        client, transport = self.client, self._transport
        if transport is None or client.is_closed or client.cookies:
            request = client.build_request("POST", target.url, content=body, headers=target.headers, timeout=timeout)
            return await client.send(request, stream=stream)
        headers = httpx.Headers(target.direct_headers)
        headers["Content-Length"] = str(len(body))
        request = httpx.Request(
            "POST",
            target.url,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={"timeout": timeout.as_dict()},
        )
        request.read()  # request.content is the body, so the transport sends it in one write, as httpx's would
        response = await transport.handle_async_request(request)
        response.request = request
        if "set-cookie" in response.headers:
            client.cookies.extract_cookies(response)
        if _httpx_logger.isEnabledFor(logging.INFO):
            _httpx_logger.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        if not stream:
            try:
                if "content-encoding" in response.headers:
                    await response.aread()  # httpx decodes gzip, br, ...
                else:
                    # What aread() ends with for an identity body, without its per-chunk decoder and chunker
                    # generators (~35 µs a call): the raw pieces joined. The stream put the connection back
                    # once read to the end, so the response is closed as aread() would leave it.
                    # httpx types the stream as sync or async; an AsyncClient's response always has the async one
                    pieces = cast(httpx.AsyncByteStream, response.stream)
                    content = b"".join([piece async for piece in pieces])
                    response._content = content
                    response._num_bytes_downloaded = len(content)
                    response.is_stream_consumed = response.is_closed = True
            except BaseException:
                await response.aclose()
                raise
        return response
