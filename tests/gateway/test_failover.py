"""Pools: failover before any byte, exhaustion answers, known-throttled probes, and the settle-safe ordering
(no 2xx response start before the upstream accepted the call)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examples.gateway import Gateway, Timeouts
from examples.gateway.emulator import EmulatorServer
from examples.gateway.sse import iter_events

from .conftest import client_for, emulator_requests, set_fault

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-5.2"
UPSTREAM = "gpt-5.2"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 32}
TWO = ("a", "b")


async def _post(app: Starlette, body: dict[str, Any] = BODY, **kw: Any) -> httpx.Response:
    async with client_for(app) as c:
        return await c.post("/v1/chat/completions", json=body, **kw)


@pytest.mark.parametrize("fault", ["429", "500", "503", "529", "401", "timeout;delay=1", "slow-first-byte;delay=1"])
@pytest.mark.parametrize("stream", [False, True])
async def test_fails_over_to_the_next_endpoint(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, fault: str, stream: bool
) -> None:
    set_fault(emulator, fault, endpoint="a")
    r = await _post(make_app(TWO), {**BODY, "stream": stream})
    assert r.status_code == 200, r.text
    assert r.headers["x-gateway-upstream"] == "b"
    assert emulator_requests(emulator, endpoint="a") == 1 and emulator_requests(emulator, endpoint="b") == 1
    if stream:
        assert r.text.endswith("data: [DONE]\n\n")


async def test_anthropic_and_gemini_pools_fail_over_too(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    set_fault(emulator, "529", endpoint="a")
    app = make_app(TWO)
    for model in ("anthropic/claude-haiku-4.5", "google/gemini-3.1-pro"):
        r = await _post(app, {**BODY, "model": model, "stream": True})
        assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "b", model


async def test_exhausted_by_rate_limits_gives_the_429_shape(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    set_fault(emulator, "429", endpoint="a", retry_after=30)
    set_fault(emulator, "429", endpoint="b", retry_after=12)
    r = await _post(make_app(TWO))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "12"  # the soonest any endpoint frees up
    assert r.headers["x-ratelimit-source"] == "openai"
    body = r.json()
    assert body == {
        **body,
        "error": "Rate limited",
        "code": "RATE_LIMITED",
        "source": "openai",
        "retry_after_seconds": 12,
    }
    assert "openai/gpt-5.2" in body["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_retry_after_defaults_to_60(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, stream: bool
) -> None:
    set_fault(emulator, "429")  # no Retry-After from the upstream
    r = await _post(make_app(), {**BODY, "stream": stream})
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert r.json()["retry_after_seconds"] == 60
    assert r.headers["content-type"] == "application/json"  # before the first SSE byte


async def test_known_throttled_model_answers_the_unpaid_probe_without_an_upstream_call(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    set_fault(emulator, "429", retry_after=40, times=1)
    app = make_app()
    assert (await _post(app)).status_code == 429
    assert emulator_requests(emulator) == 1
    r = await _post(app)  # the probe: answered from the throttle record, the upstream is not asked
    assert r.status_code == 429 and 39 <= int(r.headers["retry-after"]) <= 40
    assert r.json()["code"] == "RATE_LIMITED" and r.headers["x-ratelimit-source"] == "openai"
    assert emulator_requests(emulator) == 1
    gateway: Gateway = app.state.gateway
    assert gateway.throttled(MODEL) is not None and gateway.throttled("openai/gpt-4o") is None
    # Other models of the same family are not throttled.
    assert (await _post(app, {**BODY, "model": "openai/gpt-4o"})).status_code == 200
    # A request carrying a payment goes past the probe; the endpoint is still resting, so still no upstream call.
    r = await _post(app, headers={"payment-signature": "e30="})
    assert r.status_code == 429 and emulator_requests(emulator, model=UPSTREAM) == 1


async def test_throttle_lifts_after_success(make_app: Callable[..., Starlette], emulator: EmulatorServer) -> None:
    set_fault(emulator, "429", retry_after=1, times=1)
    app = make_app()
    assert (await _post(app)).status_code == 429
    gateway: Gateway = app.state.gateway
    gateway.throttle.clear(MODEL)
    gateway.pools._cooling.clear()  # as if the Retry-After had passed
    assert (await _post(app)).status_code == 200
    assert gateway.throttled(MODEL) is None


@pytest.mark.parametrize(
    "fault, status, code",
    [("500", 502, "UPSTREAM_ERROR"), ("timeout;delay=1", 504, "TIMEOUT"), ("401", 503, "MODEL_UNAVAILABLE")],
)
async def test_other_exhaustion_is_an_openai_envelope(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, fault: str, status: int, code: str
) -> None:
    set_fault(emulator, fault)
    r = await _post(make_app(TWO))
    assert r.status_code == status
    body = r.json()
    assert body["code"] == code and body["message"] == body["error"]["message"]
    assert body["error"]["code"] == code and body["error"]["type"] == "api_error" and body["source"] == "openai"
    assert emulator_requests(emulator) == 2


async def test_mixed_429_and_5xx_is_not_a_rate_limit(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    set_fault(emulator, "429", endpoint="a", retry_after=5)
    set_fault(emulator, "503", endpoint="b")
    r = await _post(make_app(TWO))
    assert r.status_code == 502 and r.json()["code"] == "UPSTREAM_ERROR"


async def test_client_errors_do_not_fail_over(make_app: Callable[..., Starlette], emulator: EmulatorServer) -> None:
    set_fault(emulator, "400", endpoint="a")
    r = await _post(make_app(TWO))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST_BODY"
    assert emulator_requests(emulator, endpoint="b") == 0


async def test_connection_refused_fails_over(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, catalog: Any
) -> None:
    from examples.gateway import GatewayConfig, create_app
    from examples.gateway.catalog import EndpointSpec
    from examples.gateway.emulator import bind_loopback

    dead = bind_loopback()
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more
    pools = {
        "openai": (
            EndpointSpec("dead", "openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="k"),
            EndpointSpec("live", "openai", base_url=emulator.url + "/v1", api_key="k"),
        )
    }
    app = create_app(GatewayConfig(catalog=catalog, pools=pools, timeouts=Timeouts(1, 1, 1, 1)))
    r = await _post(app)
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "live"


@pytest.mark.parametrize("fault", ["error-mid-stream", "drop-mid-stream"])
async def test_failure_after_the_first_chunk_ends_the_stream_with_an_error(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, fault: str
) -> None:
    set_fault(emulator, fault, endpoint="a")
    r = await _post(make_app(TWO), {**BODY, "stream": True})
    assert r.status_code == 200  # already started: too late to fail over or change the status
    assert r.headers["x-gateway-upstream"] == "a" and emulator_requests(emulator, endpoint="b") == 0
    events = [json.loads(e.data) for e in iter_events(r.text.splitlines())]
    assert events[-1]["error"]["code"] == "UPSTREAM_STREAM_ERROR"
    assert "[DONE]" not in r.text


async def test_messages_stream_mid_failure_is_an_anthropic_error_event(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    set_fault(emulator, "error-mid-stream")
    body = {
        "model": "anthropic/claude-haiku-4.5",
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with client_for(make_app()) as c:
        r = await c.post("/v1/messages", json=body)
    events = [e.event for e in iter_events(r.text.splitlines())]
    assert events[0] == "message_start" and events[-1] == "error" and "message_stop" not in events


class StartSpy:
    """Stands where the payment middleware goes: records each response start and when it was sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.starts: list[tuple[int, float]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.starts.append((message["status"], time.monotonic()))
            await send(message)

        await self.app(scope, receive, spy)


@pytest.mark.parametrize("api", ["/v1/chat/completions", "/v1/messages"])
async def test_no_response_start_before_the_upstream_stream_delivered(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, api: str
) -> None:
    spies: list[StartSpy] = []

    def wrap(app: ASGIApp, gateway: Gateway) -> ASGIApp:
        spies.append(StartSpy(app))
        return spies[-1]

    set_fault(emulator, "slow-first-byte;delay=0.3")
    app = make_app(wrap=wrap, timeouts=Timeouts(connect=2, first_byte=2, read=2, total=2))
    body = {**BODY, "stream": True}
    began = time.monotonic()
    r = await _post(app, body) if api.endswith("completions") else await _messages(app, body)
    assert r.status_code == 200
    ((status, when),) = spies[0].starts
    assert status == 200 and when - began >= 0.3  # the 2xx start waited for the upstream's first chunk


@pytest.mark.parametrize("fault", ["429", "500", "timeout;delay=1"])
async def test_failed_upstreams_never_produce_a_2xx_start(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, fault: str
) -> None:
    spies: list[StartSpy] = []

    def wrap(app: ASGIApp, gateway: Gateway) -> ASGIApp:
        spies.append(StartSpy(app))
        return spies[-1]

    set_fault(emulator, fault)
    app = make_app(TWO, wrap=wrap)
    for stream in (False, True):
        r = await _post(app, {**BODY, "stream": stream})
        assert r.status_code >= 400
    assert [s for s, _ in spies[0].starts if 200 <= s < 300] == []


async def _messages(app: Starlette, body: dict[str, Any]) -> httpx.Response:
    async with client_for(app) as c:
        return await c.post("/v1/messages", json=body)
