"""Pure translators between OpenAI Chat Completions (the canonical format), Anthropic Messages and Gemini.

No I/O here: the providers and the app feed parsed JSON in and get JSON (or SSE events) out.
"""

from __future__ import annotations

from ._common import StreamError

__all__ = ["StreamError"]
