"""Emulated Gemini API: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._http import context, json_response, read_json, send_events, send_json_slowly, status_fault
from ._reply import Reply, count_tokens, make_reply

_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1beta"),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def error(status: int, retry_after: int | None = None, message: str | None = None) -> Response:
    """Google's envelope ``{"error": {"code", "message", "status", "details"?}}``; 429 carries a RetryInfo delay."""
    name, default = _STATUS.get(status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", f"HTTP {status}"))
    error_obj: dict[str, Any] = {"code": status, "message": message or default, "status": name}
    if status == 429 and retry_after is not None:
        error_obj["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}]
    return json_response({"error": error_obj}, status)


async def dispatch(request: Request) -> Response:
    """``/v1beta/models/{model}:{method}``: the colon is not a path separator, so split it here."""
    model, _, method = request.path_params["rest"].partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        return error(404, message=f"Method {method or '(none)'} is not supported")
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key or key == "invalid":
        return error(
            400 if key == "invalid" else 403,
            message="API key not valid. Please pass a valid API key."
            if key
            else "Method doesn't allow unregistered callers. Please use API Key or other form of API consumer identity.",
        )
    body = await read_json(request)
    problem = _validate(body)
    if problem:
        return error(400, message=problem)
    ctx = await context(request, "gemini", model)
    if (failed := status_fault(ctx.fault, error)) is not None:
        return failed
    reply = _reply(model, body)
    rid = uuid.uuid4().hex[:20]
    finish = {"length": "MAX_TOKENS"}.get(reply.reason, "STOP")

    def usage(out: int) -> dict[str, int]:
        return {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": out,
            "totalTokenCount": reply.input_tokens + out,
        }

    def response(parts: list[dict[str, Any]], out: int, done: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if done:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage(out), "modelVersion": model, "responseId": rid}

    tool_parts: list[dict[str, Any]] = (
        [{"functionCall": {"name": reply.tool, "args": json.loads(reply.tool_args)}}] if reply.tool else []
    )
    if method == "generateContent":
        parts: list[dict[str, Any]] = tool_parts or [{"text": reply.text}]
        return send_json_slowly(response(parts, reply.output_tokens, True), ctx.fault)
    if request.query_params.get("alt") != "sse":
        return error(400, message="this emulator streams only with ?alt=sse")
    pieces: list[list[dict[str, Any]]] = [tool_parts] if reply.tool else [[{"text": p}] for p in reply.pieces] or [[]]
    events = []
    for i, parts in enumerate(pieces):
        done = i == len(pieces) - 1
        out = reply.output_tokens if done else i + 1
        events.append(b"data: " + json.dumps(response(parts, out, done), separators=(",", ":")).encode() + b"\r\n\r\n")
    err = {"error": {"code": 503, "message": _STATUS[503][1], "status": "UNAVAILABLE"}}
    return send_events(events, ctx.fault, b"data: " + json.dumps(err).encode() + b"\r\n\r\n")


def _validate(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, c in enumerate(contents):
        if not isinstance(c, Mapping) or c.get("role", "user") not in ("user", "model", "function"):
            return f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
    max_out = (body.get("generationConfig") or {}).get("maxOutputTokens")
    if max_out is not None and (type(max_out) is not int or max_out < 1):
        return "* GenerateContentRequest.generation_config.max_output_tokens: must be a positive integer"
    return None


def _reply(model: str, body: Mapping[str, Any]) -> Reply:
    system = body.get("systemInstruction") or {}
    texts = [_text(system.get("parts"))] + [_text(c.get("parts")) for c in body["contents"]]
    last = next((_text(c.get("parts")) for c in reversed(body["contents"]) if c.get("role", "user") != "model"), "")
    config = body.get("generationConfig") or {}
    functions = [f.get("name") for t in body.get("tools") or () for f in t.get("functionDeclarations") or ()]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    tool = None
    if functions and calling.get("mode") == "ANY":
        tool = str((calling.get("allowedFunctionNames") or functions)[0])
    return make_reply(
        model,
        last,
        config.get("maxOutputTokens") or 8192,
        list(config.get("stopSequences") or ()),
        count_tokens(texts),
        tool,
    )


def _text(parts: Any) -> str:
    out = []
    for p in parts or ():
        if isinstance(p, Mapping) and "text" in p:
            out.append(str(p["text"]))
        elif isinstance(p, Mapping) and "functionResponse" in p:
            out.append(json.dumps(p["functionResponse"].get("response"), separators=(",", ":")))
    return "".join(out)
