"""Anthropic Messages SSE <-> OpenAI chat chunks, both directions, as small state machines.

:class:`AnthropicDecoder` turns an upstream Anthropic event stream into canonical
chunks (ending with a usage-only chunk); :class:`AnthropicEncoder` turns canonical
chunks into the Anthropic event sequence for ``POST /v1/messages`` with
``stream: true``: ``message_start``, ``ping``, per block ``content_block_start`` /
``content_block_delta`` / ``content_block_stop``, then ``message_delta`` and
``message_stop``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._common import StreamError, chunk, new_id, now
from .anthropic import FINISH_TO_STOP, STOP_TO_FINISH, usage_from_anthropic


class AnthropicDecoder:
    """Feed parsed Anthropic SSE ``data`` objects; get canonical chunks back. ``done`` after ``message_stop``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = new_id("chatcmpl-")
        self.created = now()
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self.done = False

    def feed(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = "chatcmpl-" + str(message.get("id") or self.id)
            self.usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tools.setdefault(int(data.get("index", 0)), len(self.tools))
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block.get("id", ""),
                                    "type": "function",
                                    "function": {"name": block.get("name", ""), "arguments": ""},
                                }
                            ]
                        }
                    )
                ]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tools.get(int(data.get("index", 0)), 0)
                return [
                    self._chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                    )
                ]
            if delta.get("type") == "thinking_delta":
                return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
            return []
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, STOP_TO_FINISH.get(stop or "", "stop"))]
        if kind == "message_stop":
            self.done = True
            return [chunk(self.id, self.model, self.created, None, usage=usage_from_anthropic(self.usage))]
        if kind == "error":
            error = data.get("error") or {}
            overloaded = error.get("type") in ("overloaded_error", "rate_limit_error")
            raise StreamError(
                str(error.get("message") or "upstream stream error"), "rate_limited" if overloaded else "server"
            )
        return []  # ping, content_block_stop, unknown future events

    def end(self) -> list[dict[str, Any]]:
        if not self.done:
            raise StreamError("the Anthropic stream ended before message_stop")
        return []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(self.id, self.model, self.created, delta, finish)


class AnthropicEncoder:
    """Feed canonical chunks; get ``(event, data)`` pairs of the Anthropic stream. Call :meth:`close` at the end."""

    def __init__(self, model: str, input_tokens: int = 0) -> None:
        self.model = model
        self.id = new_id("msg_")
        self.input_tokens = input_tokens
        self.output_tokens = 0
        self.started = False
        self.block = -1  # index of the open content block, -1 when none is open
        self.block_kind = ""
        self.tools: dict[int, int] = {}  # OpenAI tool_calls index -> block index
        self.stop_reason = "end_turn"

    def feed(self, c: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = self._start()
        if isinstance(c.get("usage"), Mapping):
            self.input_tokens = int(c["usage"].get("prompt_tokens") or self.input_tokens)
            self.output_tokens = int(c["usage"].get("completion_tokens") or 0)
        for choice in c.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.block_kind != "text":
                    out += self._open({"type": "text", "text": ""}, "text")
                out.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self.block,
                            "delta": {"type": "text_delta", "text": delta["content"]},
                        },
                    )
                )
            for tc in delta.get("tool_calls") or ():
                index = int(tc.get("index", 0))
                fn = tc.get("function") or {}
                if index not in self.tools:
                    out += self._open(
                        {
                            "type": "tool_use",
                            "id": tc.get("id") or new_id("toolu_"),
                            "name": fn.get("name", ""),
                            "input": {},
                        },
                        "tool_use",
                    )
                    self.tools[index] = self.block
                if fn.get("arguments"):
                    out.append(
                        (
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": self.tools[index],
                                "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]},
                            },
                        )
                    )
            if choice.get("finish_reason"):
                self.stop_reason = FINISH_TO_STOP.get(choice["finish_reason"], "end_turn")
        return out

    def close(self) -> list[tuple[str, dict[str, Any]]]:
        out = self._start() + self._close_block()
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    @staticmethod
    def error(message: str) -> tuple[str, dict[str, Any]]:
        return "error", {"type": "error", "error": {"type": "api_error", "message": message}}

    def _start(self) -> list[tuple[str, dict[str, Any]]]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
        }
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _open(self, block: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
        out = self._close_block()
        self.block += 1
        self.block_kind = kind
        out.append(
            ("content_block_start", {"type": "content_block_start", "index": self.block, "content_block": block})
        )
        return out

    def _close_block(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.block_kind:
            return []
        self.block_kind = ""
        return [("content_block_stop", {"type": "content_block_stop", "index": self.block})]


def encode_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One Anthropic-style SSE event (``event:`` line, ``data:`` line, blank line)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()
