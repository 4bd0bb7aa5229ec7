"""Pure translation both ways (no network): requests, responses and stream state machines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from examples.gateway.providers.errors import failure_from_response
from examples.gateway.sse import iter_events
from examples.gateway.translate._common import StreamError
from examples.gateway.translate.anthropic import (
    from_anthropic_request,
    from_anthropic_response,
    to_anthropic_request,
    to_anthropic_response,
)
from examples.gateway.translate.anthropic_stream import AnthropicDecoder, AnthropicEncoder
from examples.gateway.translate.gemini import GeminiDecoder, from_gemini_response, to_gemini_request

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CONVERSATION: dict[str, Any] = {
    "model": "x/y",
    "temperature": 1.6,
    "top_p": 0.9,
    "stop": "END",
    "tools": TOOLS,
    "tool_choice": "required",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "user", "content": "Thanks"},
    ],
}


def test_openai_to_anthropic_request() -> None:
    out = to_anthropic_request(CONVERSATION, "claude-x", 256)
    assert out["model"] == "claude-x" and out["max_tokens"] == 256
    assert out["system"] == "Be brief."
    assert out["temperature"] == 1 and out["top_p"] == 0.9 and out["stop_sequences"] == ["END"]
    assert out["tools"] == [
        {"name": "weather", "description": "Weather for a city", "input_schema": TOOLS[0]["function"]["parameters"]}
    ]
    assert out["tool_choice"] == {"type": "any"}
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["user", "assistant", "user"]  # tool result + "Thanks" merged into one user turn
    assert out["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
    ]
    assert out["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": '{"temp": 21}',
    }


def test_anthropic_response_to_openai() -> None:
    resp = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "stop_reason": "tool_use",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Oslo"}},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3},
    }
    out = from_anthropic_response(resp, "anthropic/claude-x")
    message = out["choices"][0]["message"]
    assert out["model"] == "anthropic/claude-x" and out["object"] == "chat.completion"
    assert message["content"] == "Checking." and message["reasoning_content"] == "hmm"
    assert message["tool_calls"] == [
        {"id": "toolu_9", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
    ]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 13 and out["usage"]["total_tokens"] == 18


def test_inbound_anthropic_request_round_trip() -> None:
    body = {
        "model": "openai/gpt-5.2",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Sys"}],
        "stop_sequences": ["Z"],
        "tool_choice": {"type": "tool", "name": "weather"},
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Rome"}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
    }
    out = from_anthropic_request(body)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert out["messages"][2]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Rome"}'}
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert out["stop"] == ["Z"] and out["max_tokens"] == 300
    back = to_anthropic_request(out, "claude", 300)  # and back out to an Anthropic upstream
    assert back["system"] == "Sys" and back["tool_choice"] == {"type": "tool", "name": "weather"}
    assert [m["role"] for m in back["messages"]] == ["user", "assistant", "user"]


def test_openai_response_to_anthropic() -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hello"}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    out = to_anthropic_response(resp, "openai/gpt-5.2")
    assert out["type"] == "message" and out["id"].startswith("msg_")
    assert out["content"] == [{"type": "text", "text": "Hello"}]
    assert out["stop_reason"] == "max_tokens"
    assert out["usage"] == {"input_tokens": 7, "output_tokens": 2}


def test_openai_to_gemini_request() -> None:
    out = to_gemini_request({**CONVERSATION, "response_format": {"type": "json_object"}}, 99)
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert out["contents"][1]["parts"] == [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]
    assert out["contents"][2]["parts"][0] == {"functionResponse": {"name": "weather", "response": {"temp": 21}}}
    config = out["generationConfig"]
    assert config["maxOutputTokens"] == 99 and config["stopSequences"] == ["END"] and config["topP"] == 0.9
    assert config["responseMimeType"] == "application/json"
    assert out["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_gemini_response_to_openai() -> None:
    resp = {
        "responseId": "r1",
        "candidates": [
            {
                "finishReason": "MAX_TOKENS",
                "content": {"role": "model", "parts": [{"text": "think", "thought": True}, {"text": "Answer"}]},
            }
        ],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2},
    }
    out = from_gemini_response(resp, "google/gemini-2.5-flash")
    assert out["choices"][0]["message"]["content"] == "Answer"
    assert out["choices"][0]["message"]["reasoning_content"] == "think"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}


def _sse(raw: str) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in iter_events(raw.splitlines()) if e.data and e.data != "[DONE]"]


def test_anthropic_stream_to_chunks_and_back() -> None:
    sequence: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 12, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "tu", "name": "f", "input": {}},
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    raw = "".join(f"event: {d['type']}\ndata: {json.dumps(d)}\n\n" for d in sequence)
    decoder = AnthropicDecoder("anthropic/c")
    chunks = [c for data in _sse(raw) for c in decoder.feed(data)] + decoder.end()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Hi"
    args = "".join(tc["function"].get("arguments", "") for d in deltas for tc in d.get("tool_calls", ()))
    assert json.loads(args) == {"a": 1}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 9
    assert chunks[-1]["usage"]["prompt_tokens"] == 12

    encoder = AnthropicEncoder("anthropic/c", 12)
    events = [e for c in chunks for e in encoder.feed(c)] + encoder.close()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"] == {"input_tokens": 12, "output_tokens": 9}


def test_stream_errors_and_truncation() -> None:
    decoder = AnthropicDecoder("m")
    with pytest.raises(StreamError) as info:
        decoder.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert info.value.kind == "rate_limited"
    with pytest.raises(StreamError):
        AnthropicDecoder("m").end()
    gemini = GeminiDecoder("g")
    gemini.feed({"candidates": [{"content": {"parts": [{"text": "a"}]}}]})
    with pytest.raises(StreamError):
        gemini.end()


def test_gemini_stream_to_chunks() -> None:
    decoder = GeminiDecoder("google/g")
    chunks = decoder.feed({"responseId": "r", "candidates": [{"content": {"parts": [{"text": "Hel"}]}}]})
    chunks += decoder.feed(
        {
            "candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
        }
    )
    chunks += decoder.end()
    assert chunks[0]["id"] == "chatcmpl-r"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_sse_parser_handles_crlf_comments_and_multiline() -> None:
    raw = ": heartbeat\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\ndata: last"
    events = list(iter_events(raw.splitlines()))
    assert [(e.event, e.data) for e in events] == [("x", "a\nb"), (None, "last")]


@pytest.mark.parametrize(
    "headers, body, expected",
    [
        ({"retry-after": "7"}, b"", 7),
        ({"retry-after": "0.2"}, b"", 1),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"", None),  # in the past
        ({"x-ratelimit-reset-requests": "6m0s"}, b"", 360),
        ({"x-ratelimit-reset-requests": "250ms"}, b"", 1),
        (
            {},
            json.dumps(
                {
                    "error": {
                        "code": 429,
                        "status": "RESOURCE_EXHAUSTED",
                        "message": "quota",
                        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}],
                    }
                }
            ).encode(),
            37,
        ),
        ({}, b"", None),
    ],
)
def test_retry_delay_from_every_provider(headers: dict[str, str], body: bytes, expected: int | None) -> None:
    failure = failure_from_response(429, headers, body, "ep")
    assert failure.kind == "rate_limited" and failure.retry_after == expected


@pytest.mark.parametrize(
    "status, kind",
    [
        (400, "client"),
        (401, "auth"),
        (404, "auth"),
        (408, "timeout"),
        (500, "server"),
        (529, "server"),
        (422, "client"),
    ],
)
def test_failure_kinds(status: int, kind: str) -> None:
    failure = failure_from_response(status, {}, b'{"type":"error","error":{"type":"x","message":"boom"}}', "ep")
    assert (failure.kind, failure.message, failure.retryable) == (kind, "boom", kind != "client")
