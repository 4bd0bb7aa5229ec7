"""The gateway app in-process (ASGITransport) against the emulator as a real local HTTP server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from examples.gateway.emulator import EmulatorServer
from examples.gateway.sse import iter_events

from .conftest import emulator_requests

pytestmark = pytest.mark.anyio

MODELS = ["openai/gpt-5.2", "anthropic/claude-sonnet-4.6", "google/gemini-2.5-flash", "deepseek/deepseek-chat"]
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]


def _chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in iter_events(text.splitlines()) if e.data != "[DONE]"]


@pytest.mark.parametrize("model", MODELS)
async def test_chat_non_stream(client: httpx.AsyncClient, model: str) -> None:
    r = await client.post("/v1/chat/completions", json={"model": model, "messages": ASK, "max_tokens": 64})
    assert r.status_code == 200, r.text
    body = r.json()
    upstream_id = model.split("/")[1].replace(".", "-") if model.startswith("anthropic") else model.split("/")[1]
    assert body["model"] == model and isinstance(body["created"], int) and body["id"]
    assert body["choices"][0]["index"] == 0
    assert body["choices"][0]["message"] == {
        **body["choices"][0]["message"],
        "role": "assistant",
        "content": f"Echo ({upstream_id}): hello world",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == 4 and usage["total_tokens"] == usage["prompt_tokens"] + 4
    assert r.headers["x-gateway-upstream"].startswith("emulator-")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("include_usage", [True, False])
async def test_chat_stream_shape(client: httpx.AsyncClient, model: str, include_usage: bool) -> None:
    body: dict[str, Any] = {"model": model, "messages": ASK, "max_tokens": 64, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = await client.post("/api/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    assert all(line.startswith("data: ") for line in r.text.split("\n") if line)
    chunks = _chunks(r.text)
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.endswith(": hello world")
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1 and finishes[0]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
        assert finishes[0].get("usage") is None  # OpenAI: "usage": null on every chunk before the usage chunk
    else:
        assert chunks[-1] is finishes[0] and finishes[0]["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("model", MODELS)
async def test_messages_for_any_model(client: httpx.AsyncClient, model: str) -> None:
    body = {
        "model": model,
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}],
    }
    r = await client.post(
        "/v1/messages", json=body, headers={"x-api-key": "blockrun", "anthropic-version": "2023-06-01"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "message" and out["role"] == "assistant" and out["model"] == model
    assert out["content"][0]["type"] == "text" and out["content"][0]["text"].endswith("hi claude")
    assert out["stop_reason"] == "end_turn" and out["usage"]["output_tokens"] == 4

    r = await client.post("/api/v1/messages", json={**body, "stream": True})
    events = [(e.event, json.loads(e.data)) for e in iter_events(r.text.splitlines())]
    names = [name for name, _ in events]
    if model.startswith("anthropic/"):  # passed through: Anthropic's own order puts the ping after the block start
        assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    else:  # translated by the gateway's encoder
        assert names[:2] == ["message_start", "ping"]
        assert names[2:5] == ["content_block_start", "content_block_delta", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text.endswith("hi claude")
    assert events[-2][1]["usage"]["output_tokens"] == 4 and events[-2][1]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize("model", ["openai/gpt-5.2", "anthropic/claude-sonnet-4.6", "google/gemini-2.5-flash"])
async def test_tool_calls_translate_both_ways(client: httpx.AsyncClient, model: str) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    ask: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "find cats"}],
        "tools": tools,
        "tool_choice": "required",
        "max_tokens": 50,
    }
    r = await client.post("/v1/chat/completions", json=ask)
    message = r.json()["choices"][0]["message"]
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "lookup" and json.loads(call["function"]["arguments"]) == {"echo": "find cats"}
    follow = {
        **ask,
        "tool_choice": "auto",
        "messages": [*ask["messages"], message, {"role": "tool", "tool_call_id": call["id"], "content": "3 cats"}],
    }
    r = await client.post("/v1/chat/completions", json=follow)
    assert r.status_code == 200, r.text
    assert "3 cats" in r.json()["choices"][0]["message"]["content"]

    r = await client.post("/v1/chat/completions", json={**ask, "stream": True})
    chunks = _chunks(r.text)
    args = "".join(
        tc["function"].get("arguments") or ""
        for c in chunks
        if c["choices"]
        for tc in c["choices"][0]["delta"].get("tool_calls") or ()
    )
    assert json.loads(args) == {"echo": "find cats"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


async def test_messages_tool_use_stream(client: httpx.AsyncClient) -> None:
    body = {
        "model": "openai/gpt-5.2",
        "max_tokens": 50,
        "stream": True,
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "dogs"}],
    }
    r = await client.post("/v1/messages", json=body)
    events = [(e.event, json.loads(e.data)) for e in iter_events(r.text.splitlines())]
    start = next(d for n, d in events if n == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "lookup"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"echo": "dogs"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"model": "nope/model", "messages": ASK}, 400, "UNKNOWN_MODEL"),
        ({"messages": ASK}, 400, "INVALID_REQUEST_BODY"),
        ({"model": "openai/gpt-5.2", "messages": []}, 400, "INVALID_REQUEST_BODY"),
        ({"model": "openai/gpt-5.2", "messages": ASK, "max_tokens": -1}, 400, "INVALID_REQUEST_BODY"),
        ({"model": "openai/gpt-5.2", "messages": ASK, "n": 3}, 400, "INVALID_REQUEST_BODY"),
        ({"model": "openai/gpt-5.2", "messages": ASK, "stream": "yes"}, 400, "INVALID_REQUEST_BODY"),
    ],
)
async def test_bad_requests_never_reach_an_upstream(
    client: httpx.AsyncClient, emulator: EmulatorServer, body: dict[str, Any], status: int, code: str
) -> None:
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == status
    out = r.json()
    assert out["code"] == code and out["message"]
    if code == "UNKNOWN_MODEL":
        assert out["error"].startswith("Unknown model: nope/model. Try one of: ")
    else:
        assert out["error"] == {
            "message": out["message"],
            "type": "invalid_request_error",
            "code": code,
            "param": out["error"]["param"],
        }
    assert emulator_requests(emulator) == 0


async def test_invalid_json_and_unknown_paths(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST_BODY"
    r = await client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


async def test_models_listing_shape(client: httpx.AsyncClient, catalog: Any) -> None:
    r = await client.get("/v1/models")
    body = r.json()
    assert body["object"] == "list" and len(body["data"]) == len(catalog) + len(catalog.media)
    rows = {row["id"]: row for row in body["data"]}
    # Media models are listed beside chat, where BlockRun's SDKs filter by category (list_image_models).
    banana = rows["google/nano-banana"]
    assert banana["categories"] == ["image"] and banana["billing_mode"] == "flat"
    assert banana["pricing"] == {"flat": 0.04, "per_image": {"1024x1024": 0.039}}  # one image + the $0.001 fee
    gpt = rows["openai/gpt-5.5"]
    assert gpt == {
        **gpt,
        "object": "model",
        "owned_by": "openai",
        "name": "GPT-5.5",
        "context_window": 1050000,
        "max_output": 128000,
        "billing_mode": "paid",
        "pricing": {"input": 5, "output": 30},
    }
    assert isinstance(gpt["created"], int) and "chat" in gpt["categories"]
    assert rows["qwen/qwen3.7-max"]["pricing"] == {"input": 1.475, "output": 4.425}
    assert b'"input":1.475' in r.content  # written from the Decimal, not via float
    assert (
        rows["openai/gpt-oss-120b"]["billing_mode"] == "flat"
        and rows["openai/gpt-oss-120b"]["pricing"]["flat"] == 0.002
    )
    assert rows["nvidia/gemma-4-31b"]["billing_mode"] == "free"
    assert rows["openai/gpt-6-sol"]["pricing"]["long_context"] == [
        {"above_input_tokens": 272000, "input": 4, "output": 15}
    ]
    assert (await client.get("/api/v1/models")).json() == body


async def test_pricing_shape(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/pricing")).json()
    rows = {row["id"]: row for row in body["models"]}
    assert rows["openai/gpt-5.2"] == {
        **rows["openai/gpt-5.2"],
        "inputPrice": 1.75,
        "outputPrice": 14,
        "billingMode": "paid",
        "contextWindow": 400000,
    }
    assert rows["openai/gpt-oss-20b"]["flatPrice"] == 0.001
    assert body["requestFee"] == 0.001


async def test_health_never_calls_an_upstream(client: httpx.AsyncClient, emulator: EmulatorServer) -> None:
    for path in ("/api/health", "/api/health/live", "/api/health/ready", "/api/health/pools", "/api/v1/health/live"):
        r = await client.get(path)
        assert r.status_code == 200 and r.json()["status"] == "ok", path
    assert "openai" in (await client.get("/api/health/pools")).json()["pools"]
    assert (await client.get("/api/health/bogus")).status_code == 404
    assert emulator_requests(emulator) == 0


async def test_models_without_keys_are_not_listed() -> None:
    from examples.gateway import GatewayConfig, create_app

    app = create_app(GatewayConfig(env={"DEEPSEEK_API_KEY": "x"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        ids = [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
        assert ids == [
            "deepseek/deepseek-v4-pro",
            "deepseek/deepseek-v4-flash-vision-exp",
            "deepseek/deepseek-chat",
            "deepseek/deepseek-reasoner",
        ]
        r = await c.post("/v1/chat/completions", json={"model": "openai/gpt-5.2", "messages": ASK})
        assert r.status_code == 503 and r.json()["code"] == "MODEL_UNAVAILABLE"
        assert "OPENAI_API_KEY" in r.json()["message"]
        health = (await c.get("/api/health/ready")).json()
        assert health["ready"] is True
    await app.state.gateway.aclose()


async def test_unexpected_errors_are_a_json_500(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(app.state.gateway.pools, "complete", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        r = await c.post("/v1/chat/completions", json={"model": "openai/gpt-5.2", "messages": ASK})
    assert r.status_code == 500 and r.json()["code"] == "INTERNAL_ERROR"
