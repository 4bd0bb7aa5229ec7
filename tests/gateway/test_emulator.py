"""The emulator over real HTTP: each provider's wire format, usage, errors and injected faults."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from examples.gateway.emulator import EmulatorServer, spawn_emulator
from examples.gateway.sse import iter_events

from .conftest import CONTROL as http
from .conftest import emulator_requests, set_fault

OPENAI = {"authorization": "Bearer k"}
ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
GEMINI = {"x-goog-api-key": "k"}
CHAT = {
    "model": "gpt-x",
    "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello big world"}],
}


def _events(text: str) -> list[tuple[str | None, str]]:
    return [(e.event, e.data) for e in iter_events(text.splitlines())]


def test_openai_non_stream_and_stream(emulator: EmulatorServer) -> None:
    r = http.post(emulator.url + "/v1/chat/completions", headers=OPENAI, json={**CHAT, "max_tokens": 3})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Echo (gpt-x): hello"
    assert body["choices"][0]["finish_reason"] == "length"
    usage = {k: body["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0  # as OpenAI reports it
    r = http.post(
        emulator.url + "/v1/chat/completions",
        headers=OPENAI,
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(d) for _, d in _events(r.text) if d != "[DONE]"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        == "Echo (gpt-x): hello big world"
    )
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


def test_anthropic_event_sequence(emulator: EmulatorServer) -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 50,
        "system": "sys",
        "stream": True,
        "messages": [{"role": "user", "content": "hi there"}],
    }
    r = http.post(emulator.url + "/v1/messages", headers=ANTHROPIC, json=body)
    names = [e for e, _ in _events(r.text)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    data = [json.loads(d) for _, d in _events(r.text)]
    assert data[0]["message"]["usage"]["input_tokens"] == 3
    assert data[-2]["usage"]["output_tokens"] == 4 and data[-2]["delta"]["stop_reason"] == "end_turn"
    r = http.post(emulator.url + "/v1/messages", headers=ANTHROPIC, json={**body, "stream": False})
    assert r.json()["content"] == [{"type": "text", "text": "Echo (claude-x): hi there"}]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"model": "c", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "top-level system"),
        (
            {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "type: Field required",
        ),
    ],
)
def test_anthropic_rejects_what_the_real_api_rejects(
    emulator: EmulatorServer, body: dict[str, Any], message: str
) -> None:
    r = http.post(emulator.url + "/v1/messages", headers=ANTHROPIC, json=body)
    assert r.status_code == 400
    assert r.json()["type"] == "error" and message in r.json()["error"]["message"]


def test_gemini_generate_and_stream(emulator: EmulatorServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "one two"}]}], "generationConfig": {"maxOutputTokens": 3}}
    r = http.post(emulator.url + "/v1beta/models/gemini-x:generateContent", headers=GEMINI, json=body)
    out = r.json()
    assert out["candidates"][0]["content"]["parts"] == [{"text": "Echo (gemini-x): one"}]
    assert out["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert out["usageMetadata"] == {"promptTokenCount": 2, "candidatesTokenCount": 3, "totalTokenCount": 5}
    r = http.post(emulator.url + "/v1beta/models/gemini-x:streamGenerateContent?alt=sse", headers=GEMINI, json=body)
    assert "\r\n\r\n" in r.text
    events = [json.loads(d) for _, d in _events(r.text)]
    assert len(events) == 3 and events[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_auth_is_required(emulator: EmulatorServer) -> None:
    assert http.post(emulator.url + "/v1/chat/completions", json=CHAT).status_code == 401
    assert (
        http.post(emulator.url + "/v1/messages", headers={"anthropic-version": "2023-06-01"}, json={}).json()["error"][
            "type"
        ]
        == "authentication_error"
    )
    assert http.post(emulator.url + "/v1beta/models/g:generateContent", json={}).status_code == 403


def test_fault_header_uses_each_providers_envelope(emulator: EmulatorServer) -> None:
    fault = {"x-emulator-fault": "429;retry-after=7"}
    r = http.post(emulator.url + "/v1/chat/completions", headers={**OPENAI, **fault}, json=CHAT)
    assert (r.status_code, r.headers["retry-after"], r.json()["error"]["code"]) == (429, "7", "rate_limit_exceeded")
    r = http.post(
        emulator.url + "/v1/messages",
        headers={**ANTHROPIC, **fault},
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert (r.status_code, r.headers["retry-after"], r.json()["error"]["type"]) == (429, "7", "rate_limit_error")
    r = http.post(
        emulator.url + "/v1beta/models/g:generateContent",
        headers={**GEMINI, **fault},
        json={"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert r.json()["error"]["details"][0]["retryDelay"] == "7s"
    r = http.post(emulator.url + "/v1/chat/completions", headers={**OPENAI, "x-emulator-fault": "500"}, json=CHAT)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"


def test_control_rules_target_endpoint_and_model_and_count_down(emulator: EmulatorServer) -> None:
    set_fault(emulator, "503", endpoint="a", model="gpt-x", times=1)
    url_a, url_b = emulator.url + "/_ep/a/v1/chat/completions", emulator.url + "/_ep/b/v1/chat/completions"
    assert http.post(url_b, headers=OPENAI, json=CHAT).status_code == 200
    assert http.post(url_a, headers=OPENAI, json={**CHAT, "model": "other"}).status_code == 200
    assert http.post(url_a, headers=OPENAI, json=CHAT).status_code == 503
    assert http.post(url_a, headers=OPENAI, json=CHAT).status_code == 200  # times=1 used up
    assert emulator_requests(emulator, endpoint="a", model="gpt-x") == 2
    assert http.post(emulator.url + "/_control", json={"fault": "bogus"}).status_code == 400


def test_slow_first_byte_sends_headers_first(emulator: EmulatorServer) -> None:
    headers = {**OPENAI, "x-emulator-fault": "slow-first-byte;delay=0.4"}
    started = time.monotonic()
    with http.stream(
        "POST", emulator.url + "/v1/chat/completions", headers=headers, json={**CHAT, "stream": True}
    ) as r:
        assert r.status_code == 200 and time.monotonic() - started < 0.3
        r.read()
    assert time.monotonic() - started >= 0.4


def test_cli_prints_its_url_and_stops_by_pid() -> None:
    with spawn_emulator() as (url, pid):
        assert pid > 0 and url.startswith("http://127.0.0.1:")
        assert http.get(url + "/health").json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health")


def test_gateway_cli_serves_over_the_emulator() -> None:
    import re
    import subprocess
    import sys

    from examples.gateway.emulator.server import _ROOT

    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.gateway", "--port", "0", "--log-level", "warning"],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", info["url"]) and info["upstream"] == "emulator"
        r = http.post(
            info["api_url"] + "/v1/chat/completions",
            json={"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "ping"}]},
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].endswith("ping")
    finally:
        proc.terminate()
        proc.wait(10)
