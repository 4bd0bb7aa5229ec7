"""Anthropic Messages API (``POST {base_url}/v1/messages``): native pass-through, or translated from and to the
canonical format.

A ``/v1/messages`` call (``call.native``) is sent as the caller wrote it, with only ``model`` and the clamped
``max_tokens`` replaced, and its answer comes back unchanged: thinking blocks and their ``signature``,
``signature_delta`` events, ``usage.cache_*``, the native ``msg_`` id. Translation happens only across
providers (an OpenAI chat call to a Claude model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..translate import StreamError
from ..translate.anthropic import from_anthropic_response, to_anthropic_request
from ..translate.anthropic_stream import AnthropicDecoder
from .base import Call, Decoder, Endpoint, Native, Provider

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    """Claude models. Auth is ``x-api-key``; ``anthropic-version`` is pinned."""

    default_auth = "x-api-key"

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {**super().headers(endpoint), "anthropic-version": ANTHROPIC_VERSION}

    def passes_through(self, call: Call) -> bool:
        return call.native is not None

    def build(self, endpoint: Endpoint, call: Call) -> tuple[str, dict[str, Any]]:
        url = endpoint.base_url.rstrip("/") + "/v1/messages"
        if call.native is not None:
            body = {**call.native, "model": call.model.upstream_model, "max_tokens": call.max_tokens}
            body.pop("stream", None)
            if call.stream:
                body["stream"] = True
            return url, body
        body = to_anthropic_request({**call.body, "stream": call.stream}, call.model.upstream_model, call.max_tokens)
        return url, body

    def parse(self, data: Any, call: Call) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("type") != "message":
            raise TypeError("not an Anthropic message")
        if call.native is not None:
            return Native(data)
        return from_anthropic_response(data, call.model.id)

    def decoder(self, call: Call) -> Decoder:
        return NativeAnthropicDecoder() if call.native is not None else AnthropicDecoder(call.model.id)


class NativeAnthropicDecoder:
    """Pass Anthropic events through as they came; an ``error`` event or EOF before ``message_stop`` fails."""

    def __init__(self) -> None:
        self.done = False

    def feed(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = data.get("type")
        if kind == "error":
            error = data.get("error") or {}
            overloaded = isinstance(error, Mapping) and error.get("type") in ("overloaded_error", "rate_limit_error")
            message = error.get("message") if isinstance(error, Mapping) else error
            raise StreamError(str(message or "upstream stream error"), "rate_limited" if overloaded else "server")
        if kind == "message_stop":
            self.done = True
        return [dict(data)]

    def end(self) -> list[dict[str, Any]]:
        if not self.done:
            raise StreamError("the Anthropic stream ended before message_stop")
        return []
