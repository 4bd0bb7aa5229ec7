"""Deterministic replies and token counts, shared by the three emulated APIs.

The reply echoes the last user text (``Echo (model): text``), one "token" per
word, cut at ``max_tokens`` words (finish: length) or at a stop sequence.
Input tokens are ``ceil(prompt UTF-8 bytes / 4)``, at least 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    """The emulated answer: ``pieces`` are streamed one per chunk; ``reason`` is stop | length | stop_sequence | tool."""

    pieces: tuple[str, ...]
    reason: str
    input_tokens: int
    stop_sequence: str | None = None
    tool: str | None = None
    tool_args: str = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return math.ceil(len(self.tool_args) / 4) if self.tool else len(self.pieces)


def count_tokens(texts: list[str]) -> int:
    return max(1, math.ceil(sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 4))


def make_reply(
    model: str, prompt: str, max_tokens: int, stops: list[str], input_tokens: int, tool: str | None = None
) -> Reply:
    """The reply to ``prompt`` (the last user text); with ``tool`` set, a call to that tool instead."""
    if tool is not None:
        import json

        return Reply((), "tool", input_tokens, tool=tool, tool_args=json.dumps({"echo": prompt}, separators=(",", ":")))
    text = f"Echo ({model}): {prompt}" if prompt else f"Hello from the emulator ({model})."
    for stop in stops:
        if stop and stop in text:
            words = _words(text[: text.index(stop)])
            return Reply(
                tuple(words[:max_tokens]),
                "stop_sequence" if len(words) <= max_tokens else "length",
                input_tokens,
                stop_sequence=stop,
            )
    words = _words(text)
    if len(words) > max_tokens:
        return Reply(tuple(words[:max_tokens]), "length", input_tokens)
    return Reply(tuple(words), "stop", input_tokens)


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]] if text else []


def positive_int(value: Any) -> bool:
    return type(value) is int and value >= 1
