"""Async upstream clients over one shared ``aiohttp.ClientSession``: OpenAI(-compatible), Anthropic, Bedrock, Gemini."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .base import Call, Endpoint, Native, Provider, Timeouts, UpstreamStream
from .bedrock import BedrockConfig, BedrockProvider
from .failure import UpstreamFailure
from .gemini import GeminiProvider
from .openai import OpenAIProvider

PROVIDERS: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "anthropic": AnthropicProvider(),
    "bedrock": BedrockProvider(),
    "gemini": GeminiProvider(),
}

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "BedrockConfig",
    "BedrockProvider",
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
