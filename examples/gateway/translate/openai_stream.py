"""OpenAI-compatible upstream streams: chunks are already canonical, only checked for errors and completeness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._common import StreamError


class OpenAIDecoder:
    """Pass chunks through; an ``error`` object mid-stream or EOF before any ``finish_reason`` is a :class:`StreamError`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finished = False
        self.done = False

    def feed(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if "error" in data and not data.get("choices"):
            error = data.get("error")
            message = error.get("message") if isinstance(error, Mapping) else error
            raise StreamError(str(message or "upstream stream error"))
        for choice in data.get("choices") or ():
            if choice.get("finish_reason"):
                self.finished = True
        return [dict(data)]

    def end(self) -> list[dict[str, Any]]:
        if not self.finished:
            raise StreamError("the upstream stream ended before a finish_reason")
        self.done = True
        return []
