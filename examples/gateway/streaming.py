"""Writing an accepted upstream stream to the caller: OpenAI chunk SSE or the Anthropic event sequence.

The response start is only sent once the upstream stream is open (its 2xx and
first chunk are in hand), so the payment middleware settles only for streams
that really started. A failure after that point cannot change the status any
more: the stream ends with an error event instead (and no ``[DONE]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, MutableMapping
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .providers import UpstreamFailure, UpstreamStream
from .sse import DONE, data_line
from .translate.anthropic import usage_from_anthropic
from .translate.anthropic_stream import AnthropicEncoder, encode_event

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class UpstreamSSEResponse(StreamingResponse):
    """A ``text/event-stream`` response that always closes its upstream stream (also on client disconnect)."""

    def __init__(self, upstream: UpstreamStream, events: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.upstream.aclose()


async def openai_events(
    stream: UpstreamStream, model_id: str, include_usage: bool, trace: MutableMapping[str, Any]
) -> AsyncIterator[bytes]:
    """OpenAI chunks with the gateway's model id, ending with the usage and ``data: [DONE]``.

    With ``stream_options.include_usage`` the chunks go out as the upstream sent them (an OpenAI upstream's
    ``usage: null`` fields and its own usage chunk, with ``system_fingerprint`` and ``*_tokens_details``).
    Without it the gateway still asked the upstream for usage (for its log): the usage then rides on the
    finish chunk, which is held until the usage arrives.
    """
    if include_usage:
        async for line in _openai_as_sent(stream, model_id, trace):
            yield line
        return
    held: dict[str, Any] | None = None
    usage: Mapping[str, Any] | None = None
    try:
        async for chunk in stream:
            chunk["model"] = model_id
            if isinstance(chunk.get("usage"), Mapping):
                usage = chunk["usage"]
            chunk.pop("usage", None)
            if not chunk.get("choices"):
                continue  # a usage-only chunk: its usage goes on the finish chunk
            if held is not None:
                yield data_line(held)
                held = None
            if any(c.get("finish_reason") for c in chunk["choices"]):
                held = chunk
                continue
            yield data_line(chunk)
    except UpstreamFailure as failure:
        yield _stream_error(trace, failure, model_id)
        return
    trace["usage"] = usage
    if held is not None:
        if usage is not None:
            held["usage"] = usage
        yield data_line(held)
    yield DONE


async def _openai_as_sent(
    stream: UpstreamStream, model_id: str, trace: MutableMapping[str, Any]
) -> AsyncIterator[bytes]:
    usage: Mapping[str, Any] | None = None
    try:
        async for chunk in stream:
            chunk["model"] = model_id
            if isinstance(chunk.get("usage"), Mapping):
                usage = chunk["usage"]
            yield data_line(chunk)
    except UpstreamFailure as failure:
        yield _stream_error(trace, failure, model_id)
        return
    trace["usage"] = usage
    yield DONE


async def native_anthropic_events(
    stream: UpstreamStream, model_id: str, trace: MutableMapping[str, Any]
) -> AsyncIterator[bytes]:
    """An Anthropic upstream's events for an Anthropic caller, unchanged but for the model id in ``message_start``.

    Thinking blocks, ``signature_delta``, ``usage.cache_*`` and events the gateway does not know all pass.
    """
    usage: dict[str, Any] = {}
    try:
        async for event in stream:
            kind = str(event.get("type", ""))
            if kind == "message_start" and isinstance(event.get("message"), dict):
                event["message"]["model"] = model_id
                usage.update(event["message"].get("usage") or {})
            elif kind == "message_delta" and isinstance(event.get("usage"), Mapping):
                usage.update({k: v for k, v in event["usage"].items() if v is not None})
            yield encode_event(kind, event)
    except UpstreamFailure as failure:
        trace["stream_error"] = failure.message
        yield encode_event(*AnthropicEncoder.error("The upstream stream failed: " + failure.message))
        return
    trace["usage"] = usage_from_anthropic(usage)


async def anthropic_events(
    stream: UpstreamStream, model_id: str, input_tokens: int, trace: MutableMapping[str, Any]
) -> AsyncIterator[bytes]:
    """The Anthropic Messages event sequence for a canonical chunk stream."""
    encoder = AnthropicEncoder(model_id, input_tokens)
    try:
        async for chunk in stream:
            for event, data in encoder.feed(chunk):
                yield encode_event(event, data)
    except UpstreamFailure as failure:
        trace["stream_error"] = failure.message
        yield encode_event(*AnthropicEncoder.error("The upstream stream failed: " + failure.message))
        return
    trace["usage"] = stream.usage
    for event, data in encoder.close():
        yield encode_event(event, data)


def _stream_error(trace: MutableMapping[str, Any], failure: UpstreamFailure, model_id: str) -> bytes:
    trace["stream_error"] = failure.message
    return data_line(
        {
            "error": {
                "message": f"The upstream stream for {model_id} failed: {failure.message}",
                "type": "api_error",
                "code": "UPSTREAM_STREAM_ERROR",
            }
        }
    )
