"""OpenAI Chat Completions and every OpenAI-compatible API (Azure OpenAI v1, DeepSeek, xAI, Moonshot, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..translate.openai_stream import OpenAIDecoder
from .base import Call, Decoder, Endpoint, Provider

# Gateway-side fields that must not reach the upstream.
_DROP = ("model", "max_tokens", "max_completion_tokens", "stream", "stream_options")


class OpenAIProvider(Provider):
    """``POST {base_url}/chat/completions``; the canonical body passes through with the upstream model id."""

    default_auth = "bearer"

    def build(self, endpoint: Endpoint, call: Call) -> tuple[str, dict[str, Any]]:
        body = {k: v for k, v in call.body.items() if k not in _DROP}
        body["model"] = call.model.upstream_model
        body[endpoint.max_tokens_field] = call.max_tokens
        if call.stream:
            body["stream"] = True
            # Always ask for usage: the log line and streamed cost need it; the app decides what the caller sees.
            body["stream_options"] = {"include_usage": True}
        return endpoint.base_url.rstrip("/") + "/chat/completions", body

    def parse(self, data: Any, call: Call) -> dict[str, Any]:
        if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list):
            raise TypeError("not a chat completion")
        return dict(data)

    def decoder(self, call: Call) -> Decoder:
        return OpenAIDecoder(call.model.id)
