"""Emulated OpenAI Chat Completions: ``POST /v1/chat/completions``, JSON or SSE (``data:`` lines, ``[DONE]``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._http import context, json_response, read_json, send_events, send_json_slowly, status_fault
from ._reply import Reply, count_tokens, make_reply, positive_int

_ROLES = ("system", "developer", "user", "assistant", "tool")
_MESSAGES = {
    400: ("invalid_request_error", None, "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests per min (RPM). Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error(
    status: int, retry_after: int | None = None, message: str | None = None, param: str | None = None
) -> Response:
    """OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}``."""
    kind, code, default = _MESSAGES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}")
    )
    headers = {"x-request-id": "req_" + uuid.uuid4().hex}
    if status == 429 and retry_after is not None:
        headers["retry-after"] = str(retry_after)
        headers["x-ratelimit-reset-requests"] = f"{retry_after}s"
    body = {"error": {"message": message or default, "type": kind, "param": param, "code": code}}
    return json_response(body, status, headers)


async def chat_completions(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else request.headers.get("api-key", "")
    if not key or key == "invalid":
        return error(401)
    body = await read_json(request)
    problem = _validate(body)
    if problem:
        return error(400, message=problem[0], param=problem[1])
    model = body["model"]
    ctx = await context(request, "openai", model)
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    reply = _reply(body)
    cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
    usage = {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    finish = {"tool": "tool_calls", "length": "length"}.get(reply.reason, "stop")
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": None if reply.tool else reply.text, "refusal": None}
        if reply.tool:
            message["tool_calls"] = [
                {
                    "id": "call_" + cid[-12:],
                    "type": "function",
                    "function": {"name": reply.tool, "arguments": reply.tool_args},
                }
            ]
        return send_json_slowly(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_emulator",
            },
            ctx.fault,
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_emulator",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if reply.tool:
        half = len(reply.tool_args) // 2
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_" + cid[-12:],
                            "type": "function",
                            "function": {"name": reply.tool, "arguments": ""},
                        }
                    ]
                }
            )
        )
        for piece in (reply.tool_args[:half], reply.tool_args[half:]):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    events += [chunk({"content": piece}) for piece in reply.pieces]
    events.append(chunk({}, finish))
    if include_usage:
        events.append(
            b"data: "
            + json.dumps(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_emulator",
                    "choices": [],
                    "usage": usage,
                },
                separators=(",", ":"),
            ).encode()
            + b"\n\n"
        )
    events.append(b"data: [DONE]\n\n")
    err = {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return send_events(events, ctx.fault, b"data: " + json.dumps(err).encode() + b"\n\n")


def _validate(body: Any) -> tuple[str, str | None] | None:
    if not isinstance(body, Mapping):
        return "We could not parse the JSON body of your request.", None
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array", "messages"
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or m.get("role") not in _ROLES:
            return f"Invalid value for 'messages[{i}].role'", f"messages[{i}].role"
        if m["role"] == "tool" and not isinstance(m.get("tool_call_id"), str):
            return f"Missing required parameter: 'messages[{i}].tool_call_id'.", f"messages[{i}].tool_call_id"
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and body[key] is not None and not positive_int(body[key]):
            return f"Invalid '{key}': expected an integer >= 1", key
    return None


def _reply(body: Mapping[str, Any]) -> Reply:
    texts = [_text(m.get("content")) for m in body["messages"]]
    last = next((_text(m.get("content")) for m in reversed(body["messages"]) if m["role"] in ("user", "tool")), "")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return make_reply(body["model"], last, max_tokens, stops, count_tokens(texts), _forced_tool(body))


def _forced_tool(body: Mapping[str, Any]) -> str | None:
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or () if isinstance(t, Mapping)]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if isinstance(choice, Mapping):
        return str((choice.get("function") or {}).get("name") or tools[0])
    return str(tools[0]) if choice == "required" else None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""
