"""Anthropic Messages <-> OpenAI Chat Completions, non-streaming bodies, both directions.

Outbound (a Claude model behind the gateway): :func:`to_anthropic_request` and
:func:`from_anthropic_response`. Inbound (``POST /v1/messages`` for any model):
:func:`from_anthropic_request` and :func:`to_anthropic_response`.
Thinking blocks are passed to OpenAI as ``reasoning_content`` and dropped on the way back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._common import data_uri, dumps, loads_object, new_id, now, stop_list, text_of, usage

STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def to_anthropic_request(body: Mapping[str, Any], upstream_model: str, max_tokens: int) -> dict[str, Any]:
    """A canonical (OpenAI) chat body as an Anthropic Messages request body."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for m in body["messages"]:
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(text_of(content))
        elif role == "tool":
            _append(
                messages,
                "user",
                [{"type": "tool_result", "tool_use_id": str(m.get("tool_call_id", "")), "content": text_of(content)}],
            )
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = text_of(content)
            if text:
                blocks.append({"type": "text", "text": text})
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or new_id("toolu_"),
                        "name": fn.get("name", ""),
                        "input": loads_object(fn.get("arguments")),
                    }
                )
            if blocks:
                _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", _user_blocks(content))
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
    if system:
        out["system"] = "\n\n".join(system)
    if isinstance(body.get("temperature"), (int, float)):
        out["temperature"] = min(body["temperature"], 1)  # OpenAI allows 0-2, Anthropic 0-1
    if isinstance(body.get("top_p"), (int, float)):
        out["top_p"] = body["top_p"]
    if stop := stop_list(body.get("stop")):
        out["stop_sequences"] = stop
    tools = [t.get("function") or {} for t in body.get("tools") or () if isinstance(t, Mapping)]
    if tools:
        out["tools"] = [
            {
                "name": f.get("name", ""),
                "description": f.get("description", ""),
                "input_schema": f.get("parameters") or {"type": "object", "properties": {}},
            }
            for f in tools
        ]
    choice = _tool_choice_out(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and tools:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None and tools:
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    return out


def from_anthropic_response(resp: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Messages response as an OpenAI chat completion."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in resp.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id") or new_id("call_"),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": dumps(block.get("input") or {})},
                }
            )
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": "chatcmpl-" + str(resp.get("id") or new_id("")),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": STOP_TO_FINISH.get(resp.get("stop_reason") or "", "stop"),
            }
        ],
        "usage": usage_from_anthropic(resp.get("usage") or {}),
    }


def usage_from_anthropic(u: Mapping[str, Any]) -> dict[str, Any]:
    cache_read = int(u.get("cache_read_input_tokens") or 0)
    cache_write = int(u.get("cache_creation_input_tokens") or 0)
    extra = {}
    if cache_read or cache_write:
        extra = {
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
            "prompt_tokens_details": {"cached_tokens": cache_read},
        }
    return usage(int(u.get("input_tokens") or 0) + cache_read + cache_write, int(u.get("output_tokens") or 0), **extra)


def from_anthropic_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """An inbound Anthropic Messages body as a canonical OpenAI chat body (same model id)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": text_of(system)})
    for m in body.get("messages") or ():
        role, content = m.get("role"), m.get("content")
        if isinstance(content, str) or content is None:
            messages.append({"role": role, "content": content or ""})
        elif role == "assistant":
            messages.append(_assistant_from_blocks(content))
        else:
            messages.extend(_user_from_blocks(content))
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for key in ("max_tokens", "temperature", "top_p", "stream"):
        if key in body:
            out[key] = body[key]
    if stop := stop_list(body.get("stop_sequences")):
        out["stop"] = stop
    tools = [t for t in body.get("tools") or () if isinstance(t, Mapping) and t.get("type") in (None, "custom")]
    if tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name", ""),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {},
                },
            }
            for t in tools
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        out["tool_choice"] = (
            {"type": "function", "function": {"name": choice.get("name", "")}}
            if kind == "tool"
            else {"any": "required", "none": "none"}.get(str(kind), "auto")
        )
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    return out


def to_anthropic_response(resp: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A canonical OpenAI chat completion as an Anthropic Messages response."""
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text or not message.get("tool_calls"):
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": fn.get("name", ""),
                "input": loads_object(fn.get("arguments")),
            }
        )
    u = resp.get("usage") or {}
    return {
        "id": "msg_" + str(resp.get("id") or new_id("")).removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": FINISH_TO_STOP.get(choice.get("finish_reason") or "", "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(u.get("prompt_tokens") or 0),
            "output_tokens": int(u.get("completion_tokens") or 0),
        },
    }


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants user/assistant turns to alternate: merge consecutive turns of one role.
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"type": "text", "text": text_of(content)}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text"):
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            inline = data_uri(url)
            source = (
                {"type": "base64", "media_type": inline[0], "data": inline[1]}
                if inline
                else {"type": "url", "url": url}
            )
            blocks.append({"type": "image", "source": source})
        elif kind == "file":
            inline = data_uri((part.get("file") or {}).get("file_data", ""))
            if inline:
                blocks.append(
                    {"type": "document", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
                )
    return blocks or [{"type": "text", "text": ""}]


def _tool_choice_out(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "tool", "name": choice["function"].get("name", "")}
    return None


def _assistant_from_blocks(blocks: list[Any]) -> dict[str, Any]:
    texts, calls, reasoning = [], [], []
    for b in blocks:
        if not isinstance(b, Mapping):
            continue
        if b.get("type") == "text":
            texts.append(b.get("text", ""))
        elif b.get("type") == "tool_use":
            calls.append(
                {
                    "id": b.get("id") or new_id("call_"),
                    "type": "function",
                    "function": {"name": b.get("name", ""), "arguments": dumps(b.get("input") or {})},
                }
            )
        elif b.get("type") == "thinking":
            reasoning.append(b.get("thinking", ""))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message


def _user_from_blocks(blocks: list[Any]) -> list[dict[str, Any]]:
    # Tool results become OpenAI "tool" messages, which must directly follow the assistant's tool calls.
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for b in blocks:
        if not isinstance(b, Mapping):
            continue
        kind = b.get("type")
        if kind == "tool_result":
            text = text_of(b.get("content"))
            tools.append(
                {
                    "role": "tool",
                    "tool_call_id": str(b.get("tool_use_id", "")),
                    "content": f"Error: {text}" if b.get("is_error") else text,
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": b.get("text", "")})
        elif kind in ("image", "document"):
            src = b.get("source") or {}
            url = (
                f"data:{src.get('media_type', 'application/octet-stream')};base64,{src.get('data', '')}"
                if src.get("type") == "base64"
                else str(src.get("url", ""))
            )
            parts.append(
                {"type": "image_url", "image_url": {"url": url}}
                if kind == "image"
                else {"type": "file", "file": {"file_data": url}}
            )
    out = list(tools)
    if parts:
        simple = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if simple else parts})
    return out
