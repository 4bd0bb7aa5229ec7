"""Anthropic Messages API (``POST {base_url}/v1/messages``), translated from and to the canonical format."""

from __future__ import annotations

from typing import Any

from ..translate.anthropic import from_anthropic_response, to_anthropic_request
from ..translate.anthropic_stream import AnthropicDecoder
from .base import Call, Decoder, Endpoint, Provider

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    """Claude models. Auth is ``x-api-key``; ``anthropic-version`` is pinned."""

    default_auth = "x-api-key"

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {**super().headers(endpoint), "anthropic-version": ANTHROPIC_VERSION}

    def build(self, endpoint: Endpoint, call: Call) -> tuple[str, dict[str, Any]]:
        body = to_anthropic_request({**call.body, "stream": call.stream}, call.model.upstream_model, call.max_tokens)
        return endpoint.base_url.rstrip("/") + "/v1/messages", body

    def parse(self, data: Any, call: Call) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("type") != "message":
            raise TypeError("not an Anthropic message")
        return from_anthropic_response(data, call.model.id)

    def decoder(self, call: Call) -> Decoder:
        return AnthropicDecoder(call.model.id)
