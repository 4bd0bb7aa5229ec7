"""Same provider in and out: the upstream's answer passes through unchanged (only ``model`` is the gateway's id).

Each test asks the emulator directly and through the gateway with the same request and compares the two:
thinking blocks and their ``signature``, ``signature_delta`` events, ``usage.cache_*``, ``system_fingerprint``,
``*_tokens_details`` and the native id survive; across providers the gateway still translates.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from examples.gateway.emulator import EmulatorServer
from examples.gateway.sse import iter_events

from .conftest import CONTROL

pytestmark = pytest.mark.anyio

CLAUDE, CLAUDE_UPSTREAM = "anthropic/claude-sonnet-4.6", "claude-sonnet-4-6"
GPT, GPT_UPSTREAM = "openai/gpt-5.2", "gpt-5.2"
ANTHROPIC_HEADERS = {"x-api-key": "emulator", "anthropic-version": "2023-06-01"}
THINKING: dict[str, Any] = {
    "model": CLAUDE,
    "max_tokens": 4096,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "system": [{"type": "text", "text": "You echo. " * 20, "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "hello there"}],
}


def _direct(emulator: EmulatorServer, path: str, body: dict[str, Any], upstream_model: str) -> httpx.Response:
    headers = {**ANTHROPIC_HEADERS, "authorization": "Bearer emulator"}
    return CONTROL.post(emulator.url + path, json={**body, "model": upstream_model}, headers=headers)


def _events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, json.loads(e.data)) for e in iter_events(text.splitlines()) if e.data != "[DONE]"]


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


async def test_anthropic_message_with_thinking_and_cache_passes_through(
    client: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    direct = _direct(emulator, "/v1/messages", THINKING, CLAUDE_UPSTREAM).json()
    r = await client.post("/v1/messages", json=THINKING, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == CLAUDE and out["id"].startswith("msg_") and out["id"] != direct["id"]
    assert _without(out, "id", "model") == _without(direct, "id", "model")
    thinking = out["content"][0]
    assert thinking["type"] == "thinking" and thinking["signature"] and thinking["thinking"]
    assert out["usage"]["cache_read_input_tokens"] > 0 and out["usage"]["service_tier"] == "standard"
    assert "cache_creation" in out["usage"]

    # The next turn sends the signed thinking block back; the upstream refuses one without its signature.
    messages: list[dict[str, Any]] = [*THINKING["messages"], {"role": "assistant", "content": out["content"]}]
    messages.append({"role": "user", "content": "again"})
    turn = {**THINKING, "messages": messages}
    assert (await client.post("/v1/messages", json=turn, headers=ANTHROPIC_HEADERS)).status_code == 200
    unsigned = {k: v for k, v in thinking.items() if k != "signature"}
    messages[1] = {"role": "assistant", "content": [unsigned, *out["content"][1:]]}
    refused = await client.post("/v1/messages", json=turn, headers=ANTHROPIC_HEADERS)
    assert refused.status_code == 400 and "signature" in refused.text


async def test_anthropic_stream_passes_thinking_and_signature_deltas_through(
    client: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    body = {**THINKING, "stream": True}
    direct = _events(_direct(emulator, "/v1/messages", body, CLAUDE_UPSTREAM).text)
    r = await client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    start, direct_start = events[0][1]["message"], direct[0][1]["message"]
    assert start["model"] == CLAUDE and start["id"].startswith("msg_")
    assert _without(start, "id", "model") == _without(direct_start, "id", "model")
    assert events[1:] == direct[1:]  # every later event as the upstream sent it
    deltas = [d["delta"]["type"] for name, d in events if name == "content_block_delta"]
    assert "thinking_delta" in deltas and "signature_delta" in deltas
    assert start["usage"]["cache_read_input_tokens"] > 0


async def test_openai_chat_passes_fingerprint_details_and_id_through(
    client: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    body = {"model": GPT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    direct = _direct(emulator, "/v1/chat/completions", body, GPT_UPSTREAM).json()
    r = await client.post("/v1/chat/completions", json=body)
    out = r.json()
    assert out["model"] == GPT and out["id"].startswith("chatcmpl-")
    assert _without(out, "id", "model", "created") == _without(direct, "id", "model", "created")
    assert out["system_fingerprint"] == "fp_emulator" and out["service_tier"] == "default"
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_openai_stream_with_usage_passes_every_chunk_through(
    client: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    body = {
        "model": GPT,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    direct = [d for _, d in _events(_direct(emulator, "/v1/chat/completions", body, GPT_UPSTREAM).text)]
    r = await client.post("/v1/chat/completions", json=body)
    chunks = [d for _, d in _events(r.text)]
    assert r.text.endswith("data: [DONE]\n\n")
    assert [_without(c, "id", "model", "created") for c in chunks] == [
        _without(c, "id", "model", "created") for c in direct
    ]
    assert all(c["model"] == GPT and c["system_fingerprint"] == "fp_emulator" for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_across_providers_the_gateway_translates(client: httpx.AsyncClient) -> None:
    # Anthropic in, OpenAI upstream: an Anthropic message built by the gateway.
    body = {"model": GPT, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    out = (await client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)).json()
    assert out["type"] == "message" and "system_fingerprint" not in out and out["model"] == GPT
    # OpenAI in, Anthropic upstream: a chat completion; the thinking text becomes reasoning_content.
    chat = {"model": CLAUDE, "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]}
    completion = (await client.post("/v1/chat/completions", json=chat)).json()
    assert completion["object"] == "chat.completion" and completion["model"] == CLAUDE
    assert completion["choices"][0]["message"]["content"].endswith(": hi")
