"""Async upstream clients over one shared ``aiohttp.ClientSession``: OpenAI(-compatible), Anthropic, Gemini."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .base import Call, Endpoint, Native, Provider, Timeouts, UpstreamStream
from .failure import UpstreamFailure
from .gemini import GeminiProvider
from .openai import OpenAIProvider

PROVIDERS: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
}

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "Call",
    "Endpoint",
    "GeminiProvider",
    "Native",
    "OpenAIProvider",
    "Provider",
    "Timeouts",
    "UpstreamFailure",
    "UpstreamStream",
]
