"""What every upstream client shares: the call, the resolved endpoint, failures, and the accepted stream.

A provider turns a canonical (OpenAI chat) :class:`Call` into one HTTP request
to one :class:`Endpoint`, over the gateway's single shared ``aiohttp.ClientSession`` (:class:`~.upstream.Upstream`).
It either returns a canonical completion / an :class:`UpstreamStream` whose 2xx
and first chunk have already arrived, or raises :class:`UpstreamFailure` --
always before the gateway has forwarded a byte, so the pool may fail over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from x402_middleware.wire import loads_untrusted

from ..catalog import ModelInfo
from ..sse import aiter_events
from ..translate import StreamError
from .errors import failure_from_response
from .failure import CONNECT, PROTOCOL, TIMEOUT, UpstreamFailure
from .upstream import STREAM_ERRORS, Upstream, UpstreamResponse, is_connect_timeout

if TYPE_CHECKING:
    from .bedrock import BedrockConfig

MAX_ERROR_BODY = 64 * 1024
logger = logging.getLogger("examples.gateway.upstream")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An upstream endpoint with its secrets resolved from the environment.

    ``models`` maps catalog model ids to the ids this endpoint knows them by (Bedrock's model and inference
    profile ids); ``aws`` holds the credentials and region a Bedrock endpoint signs its requests with.
    """

    family: str
    name: str
    kind: str
    base_url: str
    api_key: str | None = None
    auth: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    max_tokens_field: str = "max_tokens"
    models: Mapping[str, str] = field(default_factory=dict)
    aws: BedrockConfig | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``first_byte`` bounds the wait for the 2xx *and* the first stream chunk (failover is still possible)."""

    connect: float = 5.0
    first_byte: float = 60.0
    read: float = 120.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Call:
    """One canonical upstream call: the OpenAI-format body, the catalog model and the clamped ``max_tokens``.

    ``native`` is the caller's own body when it spoke another wire format than the canonical one (Anthropic
    Messages): an upstream of that same format gets it as sent, and its answer is passed back unchanged.
    """

    model: ModelInfo
    body: Mapping[str, Any]
    max_tokens: int
    stream: bool = False
    native: Mapping[str, Any] | None = None


class Native(dict[str, Any]):
    """An upstream's JSON answer in the caller's own wire format: passed through, not translated."""


class Decoder(Protocol):
    """Turns one upstream SSE ``data`` object into canonical chunks; :meth:`end` at EOF."""

    done: bool

    def feed(self, data: Mapping[str, Any]) -> list[dict[str, Any]]: ...

    def end(self) -> list[dict[str, Any]]: ...


class UpstreamStream:
    """An accepted upstream stream: the 2xx and the first canonical chunk have arrived.

    Iterate it for canonical chunks (a mid-stream problem raises :class:`UpstreamFailure`);
    always :meth:`aclose` it. ``usage`` holds the last usage seen.
    """

    def __init__(
        self,
        response: UpstreamResponse,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        endpoint: str,
        *,
        native: bool = False,
    ) -> None:
        self._response = response
        self._chunks = chunks
        self._first: dict[str, Any] | None = first
        self.endpoint = endpoint
        self.native = native  # items are the upstream's own events in the caller's format, not canonical chunks
        self.usage: Mapping[str, Any] | None = None

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._first is not None:
            item, self._first = self._first, None
        else:
            try:
                item = await self._chunks.__anext__()
            except StopAsyncIteration:
                raise
            except StreamError as exc:
                raise UpstreamFailure(exc.kind, exc.message, endpoint=self.endpoint) from exc
            except TimeoutError as exc:
                raise UpstreamFailure(TIMEOUT, "the upstream stream stalled", endpoint=self.endpoint) from exc
            except STREAM_ERRORS as exc:
                raise UpstreamFailure(
                    PROTOCOL, f"the upstream stream broke: {type(exc).__name__}", endpoint=self.endpoint
                ) from exc
        if isinstance(item.get("usage"), Mapping):
            self.usage = item["usage"]
        return item

    async def aclose(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            await self._response.aclose()


class Provider:
    """Base of the wire formats: subclasses build the request and parse bodies; I/O lives here."""

    default_auth = "bearer"
    #: Whether each request carries a signature over its URL and body (Bedrock's SigV4): then :meth:`sign` makes
    #: its headers per request and the URL is sent exactly as built (not re-quoted), as the signature covers it.
    signed = False

    def build(self, endpoint: Endpoint, call: Call) -> tuple[str, dict[str, Any]]:
        """``(url, json_body)`` of the upstream request."""
        raise NotImplementedError

    def parse(self, data: Any, call: Call) -> dict[str, Any]:
        """The upstream's JSON response as a canonical chat completion."""
        raise NotImplementedError

    def decoder(self, call: Call) -> Decoder:
        raise NotImplementedError

    def passes_through(self, call: Call) -> bool:
        """Whether this wire format is the caller's own (``call.native``): then nothing is translated."""
        return False

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        auth = endpoint.auth or self.default_auth
        if endpoint.api_key and auth != "none":
            if auth == "bearer":
                headers["authorization"] = f"Bearer {endpoint.api_key}"
            else:
                headers[auth] = endpoint.api_key
        headers.update(endpoint.headers)
        return headers

    def sign(self, endpoint: Endpoint, url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
        """The headers of one request to ``url`` with ``body`` (only called when :attr:`signed`)."""
        return headers

    def failure(self, status: int, headers: Mapping[str, str], content: bytes, endpoint: str) -> UpstreamFailure:
        """Classify an error response (kind, message, retry delay); providers with their own envelope override it."""
        return failure_from_response(status, headers, content, endpoint)

    async def complete(self, upstream: Upstream, endpoint: Endpoint, call: Call, timeouts: Timeouts) -> dict[str, Any]:
        """POST a non-streaming call; the canonical completion, or :class:`UpstreamFailure`."""
        url, payload = self.build(endpoint, call)
        try:  # the whole call within timeouts.total (the session's timer)
            response = await upstream.post(self, endpoint, url, payload, timeouts.total, timeouts.connect, stream=False)
        except (TimeoutError, *STREAM_ERRORS) as exc:
            raise _transport_failure(exc, endpoint) from exc
        if response.status_code >= 300:
            raise self.failure(response.status_code, response.headers, response.content, endpoint.name)
        try:
            return self.parse(loads_untrusted(response.content), call)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamFailure(
                PROTOCOL,
                f"unreadable upstream response ({type(exc).__name__})",
                status=response.status_code,
                endpoint=endpoint.name,
            ) from exc

    async def stream(self, upstream: Upstream, endpoint: Endpoint, call: Call, timeouts: Timeouts) -> UpstreamStream:
        """Open a streaming call and wait for its 2xx and first chunk (bounded by ``timeouts.first_byte``)."""
        url, payload = self.build(endpoint, call)
        response: UpstreamResponse | None = None
        chunks: AsyncIterator[dict[str, Any]] | None = None
        try:
            async with asyncio.timeout(timeouts.first_byte):
                response = await upstream.post(
                    self, endpoint, url, payload, timeouts.read, timeouts.connect, stream=True
                )
                if response.status_code >= 300:
                    content = await _read_capped(response)
                    raise self.failure(response.status_code, response.headers, content, endpoint.name)
                chunks = self.chunks(response, self.decoder(call))
                first = await chunks.__anext__()
            return UpstreamStream(response, chunks, first, endpoint.name, native=self.passes_through(call))
        except BaseException as exc:
            if chunks is not None:
                await _quiet_aclose(chunks)
            if response is not None:
                await response.aclose()
            if isinstance(exc, UpstreamFailure):
                raise
            if isinstance(exc, StopAsyncIteration):
                raise UpstreamFailure(PROTOCOL, "the upstream stream was empty", endpoint=endpoint.name) from None
            if isinstance(exc, StreamError):
                raise UpstreamFailure(exc.kind, exc.message, endpoint=endpoint.name) from exc
            if isinstance(exc, (TimeoutError, *STREAM_ERRORS)):
                raise _transport_failure(exc, endpoint) from exc
            raise

    async def chunks(self, response: UpstreamResponse, decoder: Decoder) -> AsyncIterator[dict[str, Any]]:
        """The decoded items of a streamed body: SSE ``data`` objects fed to ``decoder`` (Bedrock reads frames)."""
        async for event in aiter_events(response.aiter_lines()):
            if event.data.strip() == "[DONE]":
                break
            if not event.data.strip():
                continue
            try:
                data = loads_untrusted(event.data)
            except ValueError:
                continue  # tolerate junk lines, as the SDKs do
            if isinstance(data, Mapping):
                for item in decoder.feed(data):
                    yield item
            if decoder.done:
                break
        for item in decoder.end():
            yield item


def _transport_failure(exc: BaseException, endpoint: Endpoint) -> UpstreamFailure:
    if isinstance(exc, TimeoutError) and not is_connect_timeout(exc):
        return UpstreamFailure(TIMEOUT, "the upstream did not answer in time", endpoint=endpoint.name)
    return UpstreamFailure(CONNECT, f"cannot reach the upstream ({type(exc).__name__})", endpoint=endpoint.name)


async def _read_capped(response: UpstreamResponse) -> bytes:
    data = bytearray()
    async for part in response.aiter_bytes():
        data += part
        if len(data) > MAX_ERROR_BODY:
            break
    return bytes(data)


async def _quiet_aclose(chunks: AsyncIterator[dict[str, Any]]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception as exc:  # noqa: BLE001 - the generator may already be broken; the response is closed next anyway
        logger.debug("closing a failed upstream stream: %r", exc)
