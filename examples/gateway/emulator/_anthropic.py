"""Emulated Anthropic Messages: ``POST /v1/messages``, JSON or the SSE event sequence.

Validates what the real API rejects and a translator could get wrong: ``max_tokens``
is required, roles are only user/assistant (``system`` is top-level), content
blocks need a ``type``, ``anthropic-version`` must be sent. Like the real API it answers extended thinking
(``thinking`` blocks with a ``signature``; ``thinking_delta`` and ``signature_delta`` events), reports prompt
caching in ``usage.cache_*`` and refuses a thinking block sent back without its signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._http import context, json_response, read_json, send_events, send_json_slowly, status_fault
from ._reply import Reply, count_tokens, make_reply, positive_int

_TYPES = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error(status: int, retry_after: int | None = None, message: str | None = None) -> Response:
    """Anthropic's envelope ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    kind, default = _TYPES.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"))
    request_id = "req_" + uuid.uuid4().hex[:24]
    headers = {"request-id": request_id}
    if status in (429, 529) and retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return json_response(
        {"type": "error", "error": {"type": kind, "message": message or default}, "request_id": request_id},
        status,
        headers,
    )


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def messages(request: Request) -> Response:
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not key or key == "invalid":
        return error(401)
    if not request.headers.get("anthropic-version"):
        return error(400, message="anthropic-version: header is required")
    body = await read_json(request)
    problem = validate(body)
    if problem:
        return error(400, message=problem)
    ctx = await context(request, "anthropic", body["model"])
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    mid = "msg_" + uuid.uuid4().hex[:24]
    if not body.get("stream"):
        return send_json_slowly(message(body, mid), ctx.fault)
    return send_events([_event(name, data) for name, data in stream_events(body, mid)], ctx.fault, _event(*OVERLOADED))


#: The error event an overloaded Anthropic stream ends with (the ``error-mid-stream`` fault).
OVERLOADED = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def _answer(body: Mapping[str, Any]) -> tuple[Reply, tuple[str, str] | None, dict[str, Any], str]:
    reply = _reply(body)
    stop_reason = {"tool": "tool_use", "length": "max_tokens"}.get(
        reply.reason, reply.reason if reply.reason == "stop_sequence" else "end_turn"
    )
    return reply, _thinking(body, reply), _usage(body, reply), stop_reason


def message(body: Mapping[str, Any], mid: str) -> dict[str, Any]:
    """The ``message`` object answering a validated Messages ``body`` (its ``model`` names the model)."""
    reply, thinking, usage, stop_reason = _answer(body)
    content: list[dict[str, Any]] = (
        [{"type": "tool_use", "id": "toolu_" + mid[-20:], "name": reply.tool, "input": json.loads(reply.tool_args)}]
        if reply.tool
        else [{"type": "text", "text": reply.text}]
    )
    if thinking is not None:
        content.insert(0, {"type": "thinking", "thinking": thinking[0], "signature": thinking[1]})
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": {**usage, "output_tokens": reply.output_tokens},
    }


def stream_events(body: Mapping[str, Any], mid: str) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events (name, data) streaming the answer to a validated Messages ``body``."""
    reply, thinking, usage, stop_reason = _answer(body)
    start = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    index = 0
    if thinking is not None:
        events += _thinking_events(*thinking)
        index = 1
    if reply.tool:
        block = {"type": "tool_use", "id": "toolu_" + mid[-20:], "name": reply.tool, "input": {}}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        half = len(reply.tool_args) // 2
        for piece in (reply.tool_args[:half], reply.tool_args[half:]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
    else:
        text_block = {"type": "text", "text": ""}
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": text_block})
        )
        events.append(("ping", {"type": "ping"}))
        for piece in reply.pieces:
            delta = {"type": "text_delta", "text": piece}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": reply.stop_sequence},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _thinking(body: Mapping[str, Any], reply: Reply) -> tuple[str, str] | None:
    """Extended thinking (``thinking: {"type": "enabled", "budget_tokens": N}``): its text and a signature.

    The signature is opaque to clients and must come back unchanged in later turns; here it is a deterministic
    digest of the thinking text, so a test can tell a passed-through block from a rebuilt one.
    """
    config = body.get("thinking")
    if not isinstance(config, Mapping) or config.get("type") != "enabled":
        return None
    text = f"The user wrote {len(reply.text)} characters; echo them."
    digest = hashlib.sha256(f"{body['model']}|{text}".encode()).digest()
    return text, base64.b64encode(b"\x12\x08emulator" + digest).decode()


def _thinking_events(text: str, signature: str) -> list[tuple[str, dict[str, Any]]]:
    half = len(text) // 2
    block = {"type": "thinking", "thinking": "", "signature": ""}
    events: list[tuple[str, dict[str, Any]]] = [
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    ]
    for piece in (text[:half], text[half:]):
        delta = {"type": "thinking_delta", "thinking": piece}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    delta = {"type": "signature_delta", "signature": signature}
    events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    return events


def _usage(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    """Anthropic's usage object; a request with ``cache_control`` anywhere reads half its input from the cache."""
    cached = reply.input_tokens // 2 if '"cache_control"' in json.dumps(body) else 0
    return {
        "input_tokens": reply.input_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 0,
        "service_tier": "standard",
    }


def validate(body: Any) -> str | None:
    """What the real API answers 400 for in this Messages body (``None``: valid)."""
    if not isinstance(body, Mapping):
        return "The request body is not valid JSON."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not positive_int(body.get("max_tokens")):
        return "max_tokens: Field required" if "max_tokens" not in body else "max_tokens: Input should be >= 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant"):
            role = m.get("role") if isinstance(m, Mapping) else None
            return f"messages.{i}.role: Input should be 'user' or 'assistant'" + (
                " (use the top-level system parameter)" if role == "system" else ""
            )
        content = m.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
                    return f"messages.{i}.content.{j}.type: Field required"
                if block["type"] == "thinking" and not isinstance(block.get("signature"), str):
                    return f"messages.{i}.content.{j}.signature: Field required"
        elif not isinstance(content, str):
            return f"messages.{i}.content: Input should be a valid string or list"
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return "system: Input should be a valid string or list"
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if type(budget) is not int or budget < 1024 or budget >= body["max_tokens"]:
            return "thinking.budget_tokens: must be >= 1024 and less than max_tokens"
    return None


def _reply(body: Mapping[str, Any]) -> Reply:
    texts = [_text(body.get("system"))] + [_text(m.get("content")) for m in body["messages"]]
    last = next((_text(m.get("content")) for m in reversed(body["messages"]) if m["role"] == "user"), "")
    stops = [s for s in body.get("stop_sequences") or () if isinstance(s, str)]
    tools = [t.get("name") for t in body.get("tools") or () if isinstance(t, Mapping)]
    choice = body.get("tool_choice") or {}
    tool = None
    if tools and choice.get("type") == "tool":
        tool = str(choice.get("name") or tools[0])
    elif tools and choice.get("type") == "any":
        tool = str(tools[0])
    return make_reply(body["model"], last, body["max_tokens"], stops, count_tokens(texts), tool)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for b in content:
            if isinstance(b, Mapping) and b.get("type") == "text":
                out.append(str(b.get("text", "")))
            elif isinstance(b, Mapping) and b.get("type") == "tool_result":
                out.append(_text(b.get("content")))
        return "".join(out)
    return ""
