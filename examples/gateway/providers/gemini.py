"""Google Gemini API (``generateContent`` / ``streamGenerateContent?alt=sse``), translated to the canonical format."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..translate.gemini import GeminiDecoder, from_gemini_response, to_gemini_request
from .base import Call, Decoder, Endpoint, Provider


class GeminiProvider(Provider):
    """Gemini models; the model id goes in the URL, auth in ``x-goog-api-key``."""

    default_auth = "x-goog-api-key"

    def build(self, endpoint: Endpoint, call: Call) -> tuple[str, dict[str, Any]]:
        method = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        model = quote(call.model.upstream_model, safe="")
        return f"{endpoint.base_url.rstrip('/')}/v1beta/models/{model}:{method}", to_gemini_request(
            call.body, call.max_tokens
        )

    def parse(self, data: Any, call: Call) -> dict[str, Any]:
        if not isinstance(data, dict) or ("candidates" not in data and "promptFeedback" not in data):
            raise TypeError("not a GenerateContentResponse")
        return from_gemini_response(data, call.model.id)

    def decoder(self, call: Call) -> Decoder:
        return GeminiDecoder(call.model.id)
