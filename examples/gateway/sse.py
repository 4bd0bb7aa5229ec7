"""Server-sent events: a tolerant line parser (``\n`` or ``\r\n``, comments, multi-line data) and encoders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``event:`` name (``None`` when absent) and its joined ``data:`` lines."""

    event: str | None
    data: str


class SSEParser:
    """Feed lines (without their line break); dispatched events come back on each blank line."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def line(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and self._event is None:
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None  # comment / heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def flush(self) -> SSEEvent | None:
        """An event left without its final blank line when the stream ended."""
        return self.line("") if self._data else None


async def aiter_events(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Events of an async line iterator (e.g. ``httpx.Response.aiter_lines()``)."""
    parser = SSEParser()
    async for line in lines:
        event = parser.line(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


def iter_events(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """Events of a sync line iterable (tests, ``str.splitlines()``)."""
    parser = SSEParser()
    for line in lines:
        event = parser.line(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


def data_line(obj: Any) -> bytes:
    """``data: <compact JSON>\\n\\n`` (the OpenAI chunk framing the BlockRun SDKs parse)."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
