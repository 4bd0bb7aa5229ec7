"""Google Gemini ``generateContent`` <-> OpenAI Chat Completions (requests, responses and the SSE stream).

Gemini's stream (``:streamGenerateContent?alt=sse``) is a sequence of partial
``GenerateContentResponse`` objects and simply ends; ``usageMetadata`` is
cumulative, so the last one seen is the call's usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from x402_middleware.wire import loads_untrusted

from ._common import StreamError, chunk, data_uri, dumps, loads_object, new_id, now, stop_list, text_of, usage

FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "stop",
}


def to_gemini_request(body: Mapping[str, Any], max_tokens: int) -> dict[str, Any]:
    """A canonical (OpenAI) chat body as a Gemini ``generateContent`` body (the model goes in the URL)."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name: Gemini answers functions by name
    for m in body["messages"]:
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(text_of(content))
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            if text := text_of(content):
                parts.append({"text": text})
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                names[str(call.get("id", ""))] = fn.get("name", "")
                parts.append({"functionCall": {"name": fn.get("name", ""), "args": loads_object(fn.get("arguments"))}})
            if parts:
                _append(contents, "model", parts)
        elif role == "tool":
            call_id = str(m.get("tool_call_id", ""))
            result = text_of(content)
            try:
                parsed = loads_untrusted(result)
            except ValueError:
                parsed = None
            response = parsed if isinstance(parsed, dict) else {"content": result}
            _append(
                contents, "user", [{"functionResponse": {"name": names.get(call_id, call_id), "response": response}}]
            )
        else:
            _append(contents, "user", _parts(content))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {"maxOutputTokens": max_tokens}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if isinstance(body.get(src), (int, float)):
            config[dst] = body[src]
    if stop := stop_list(body.get("stop")):
        config["stopSequences"] = stop
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, Mapping):
            config["responseJsonSchema"] = schema
    out["generationConfig"] = config
    functions = [t.get("function") or {} for t in body.get("tools") or () if isinstance(t, Mapping)]
    if functions:
        out["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": f.get("name", ""),
                        "description": f.get("description", ""),
                        "parameters": f.get("parameters") or {"type": "object", "properties": {}},
                    }
                    for f in functions
                ]
            }
        ]
        choice = body.get("tool_choice")
        mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice if isinstance(choice, str) else "", "")
        if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
            out["toolConfig"] = {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name", "")]}
            }
        elif mode:
            out["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
    return out


def from_gemini_response(resp: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A Gemini ``GenerateContentResponse`` as an OpenAI chat completion."""
    candidate = (resp.get("candidates") or [{}])[0]
    texts, reasoning, calls = _split(candidate)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    finish = "tool_calls" if calls else FINISH.get(candidate.get("finishReason", "STOP"), "stop")
    if not resp.get("candidates"):
        finish = "content_filter"  # the prompt itself was blocked (promptFeedback.blockReason)
    return {
        "id": "chatcmpl-" + str(resp.get("responseId") or new_id("")),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_from_gemini(resp.get("usageMetadata") or {}),
    }


def usage_from_gemini(u: Mapping[str, Any]) -> dict[str, Any]:
    completion = int(u.get("candidatesTokenCount") or 0) + int(u.get("thoughtsTokenCount") or 0)
    return usage(int(u.get("promptTokenCount") or 0), completion)


class GeminiDecoder:
    """Feed parsed ``data`` objects of a Gemini SSE stream; call :meth:`end` at EOF for the usage chunk."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = new_id("chatcmpl-")
        self.created = now()
        self.started = False
        self.tool_calls = 0
        self.finished = False
        self.usage: Mapping[str, Any] = {}
        self.done = False

    def feed(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if "error" in data:
            error = data.get("error") or {}
            kind = "rate_limited" if error.get("status") == "RESOURCE_EXHAUSTED" else "server"
            raise StreamError(str(error.get("message") or "upstream stream error"), kind)
        out: list[dict[str, Any]] = []
        if not self.started:
            self.started = True
            if data.get("responseId"):
                self.id = "chatcmpl-" + str(data["responseId"])
            out.append(self._chunk({"role": "assistant", "content": ""}))
        self.usage = data.get("usageMetadata") or self.usage
        candidate = (data.get("candidates") or [{}])[0]
        texts, reasoning, calls = _split(candidate, first_index=self.tool_calls)
        if reasoning:
            out.append(self._chunk({"reasoning_content": "".join(reasoning)}))
        if texts:
            out.append(self._chunk({"content": "".join(texts)}))
        for call in calls:
            out.append(self._chunk({"tool_calls": [{"index": self.tool_calls, **call}]}))
            self.tool_calls += 1
        if candidate.get("finishReason"):
            self.finished = True
            finish = "tool_calls" if self.tool_calls else FINISH.get(candidate["finishReason"], "stop")
            out.append(self._chunk({}, finish))
        return out

    def end(self) -> list[dict[str, Any]]:
        if not self.finished:
            raise StreamError("the Gemini stream ended without a finishReason")
        self.done = True
        return [chunk(self.id, self.model, self.created, None, usage=usage_from_gemini(self.usage))]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(self.id, self.model, self.created, delta, finish)


def _split(candidate: Mapping[str, Any], first_index: int = 0) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part:
            (reasoning if part.get("thought") else texts).append(str(part["text"]))
        elif isinstance(part.get("functionCall"), Mapping):
            fc = part["functionCall"]
            calls.append(
                {
                    "id": fc.get("id") or f"call_{first_index + len(calls)}",
                    "type": "function",
                    "function": {"name": fc.get("name", ""), "arguments": dumps(fc.get("args") or {})},
                }
            )
    return texts, reasoning, calls


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": list(parts)})


def _parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"text": text_of(content)}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") in ("text", "input_text"):
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            inline = data_uri(url)
            parts.append(
                {"inlineData": {"mimeType": inline[0], "data": inline[1]}} if inline else {"fileData": {"fileUri": url}}
            )
        elif part.get("type") == "file":
            inline = data_uri((part.get("file") or {}).get("file_data", ""))
            if inline:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
    return parts or [{"text": ""}]
