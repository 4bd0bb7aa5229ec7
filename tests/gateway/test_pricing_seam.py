"""The seam for the payment layer: quotes from request bodies, and composition with x402_middleware."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from examples.gateway import INFERENCE_PATHS, Gateway, describe, price_of, x402_price_policy
from examples.gateway.emulator import EmulatorServer
from tests._facilitator_double import FakeFacilitator
from tests._payments import decode, pay_v2
from x402_middleware import PaymentMiddleware, PaymentRequest, Priced, RouteConfig, TokenAmount, UnpriceableRequestError

from .conftest import client_for, emulator_requests, set_fault

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
CHAT = {"model": "openai/gpt-5.5", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 8192}


def _gateway(make_app: Callable[..., Starlette]) -> Gateway:
    gateway: Gateway = make_app().state.gateway
    return gateway


def test_price_of(make_app: Callable[..., Starlette]) -> None:
    gw = _gateway(make_app)
    quote = price_of(gw, "/api/v1/chat/completions", CHAT)
    # "What is 2+2?" = 12 bytes -> 3 tokens + 4 per message = 7 x $5; 820 x $30; + $0.001 fee (micro-USD)
    assert quote is not None and quote.amount == 7 * 5 + 820 * 30 + 1000 == 25635
    assert price_of(gw, "/v1/chat/completions", {**CHAT, "model": "nvidia/gemma-4-31b"}).amount is None  # type: ignore[union-attr]
    messages = price_of(
        gw,
        "/v1/messages",
        {"model": "anthropic/claude-haiku-4.5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert messages is not None and messages.amount == 2000
    assert describe(gw, "/v1/chat/completions", CHAT) == "GPT-5.5 API call (~7 input, 8192 max output tokens)"


BAD_BODIES: list[Any] = [
    {**CHAT, "model": "nope/nope"},
    {**CHAT, "max_tokens": 0},
    {"messages": CHAT["messages"]},
    {**CHAT, "messages": []},
    {**CHAT, "n": 2},
]


@pytest.mark.anyio
@pytest.mark.parametrize("body", BAD_BODIES)
async def test_unpriced_bodies_are_refused_by_the_app_before_any_upstream_call(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, body: Any
) -> None:
    app = make_app()
    assert price_of(app.state.gateway, "/v1/chat/completions", body) is None
    async with client_for(app) as c:
        r = await c.post("/v1/chat/completions", json=body)
    assert 400 <= r.status_code < 500
    assert emulator_requests(emulator) == 0


def test_x402_policy(make_app: Callable[..., Starlette]) -> None:
    policy = x402_price_policy(_gateway(make_app))
    assert policy(PaymentRequest("POST", "/v1/chat/completions", body=CHAT)) == Priced(
        TokenAmount(25635), "GPT-5.5 API call (~7 input, 8192 max output tokens)"
    )
    assert policy(PaymentRequest("POST", "/v1/chat/completions", body={**CHAT, "model": "nvidia/gemma-4-31b"})) is None
    with pytest.raises(UnpriceableRequestError):
        policy(PaymentRequest("POST", "/v1/chat/completions", body=None))


def _with_payment(app: ASGIApp, gateway: Gateway) -> ASGIApp:
    policy = x402_price_policy(gateway)
    routes = {
        f"POST {p}": RouteConfig(price=policy, price_body=True, description="AI API call") for p in INFERENCE_PATHS
    }
    return PaymentMiddleware(app, routes=routes, pay_to=PAY_TO, network="eip155:84532", facilitator=FakeFacilitator())


@pytest.mark.anyio
async def test_composed_with_the_payment_middleware(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    app = make_app(wrap=_with_payment)
    async with client_for(app) as c:
        r = await c.post("/api/v1/chat/completions", json=CHAT)
        assert r.status_code == 402
        required = json.loads(base64.b64decode(r.headers["payment-required"]))
        assert required["accepts"][0]["amount"] == "25635"
        # What is bought, per call (BlockRun's wording; ASCII for the TypeScript SDK's btoa)
        assert required["resource"]["description"] == "GPT-5.5 API call (~7 input, 8192 max output tokens)"
        assert emulator_requests(emulator) == 0
        # Free models and refused bodies never see a 402.
        r = await c.post("/v1/chat/completions", json={**CHAT, "model": "nvidia/gemma-4-31b"})
        assert r.status_code == 200 and r.headers["x-gateway-upstream"]
        r = await c.post("/v1/chat/completions", json={**CHAT, "model": "nope/nope"})
        assert r.status_code == 400 and r.json()["error"].startswith("Unknown model")
        # A known-throttled model answers the unpaid probe with its 429, before any 402.
        set_fault(emulator, "429", retry_after=30, times=1)
        r = await c.post("/v1/chat/completions", json={**CHAT, "model": "nvidia/gemma-4-31b"})  # free: reaches pools
        assert r.status_code == 429
        r = await c.post("/v1/chat/completions", json={**CHAT, "model": "nvidia/gemma-4-31b"})
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
        assert r.headers["x-ratelimit-source"] == "nvidia"
        # ... and so does a paid model: the 429 comes first, so SDK fallbacks move on without signing.
        app.state.gateway.throttle.mark("openai/gpt-5.5", 30, "openai")
        r = await c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 429 and "payment-required" not in r.headers
        assert r.json()["retry_after_seconds"] == 30 and r.headers["retry-after"] == "30"
        # Health and listings pass through the payment layer untouched.
        assert (await c.get("/v1/models")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_paid_call_is_parsed_and_quoted_once(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    app = make_app(wrap=_with_payment)
    gateway: Gateway = app.state.gateway
    calls: list[str] = []
    prepare = gateway.prepare

    def counting(api: str, body: Any) -> Any:
        calls.append(api)
        return prepare(api, body)

    monkeypatch.setattr(gateway, "prepare", counting)
    body = CHAT if path.endswith("completions") else {**CHAT, "model": "anthropic/claude-haiku-4.5", "max_tokens": 64}
    async with client_for(app) as c:
        challenge = await c.post(path, json=body)
        assert challenge.status_code == 402 and len(calls) == 1
        r = await c.post(
            path, json=body, headers={"PAYMENT-SIGNATURE": pay_v2(decode(challenge.headers["payment-required"]))}
        )
    assert r.status_code == 200, r.text
    assert len(calls) == 2  # one per request: the policy and the handler share it
    assert emulator_requests(emulator) == 1


@pytest.mark.anyio
async def test_a_vip_client_sending_both_payment_headers_is_served_once(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    # BlockRun's newer clients send the same v2 payload as PAYMENT-SIGNATURE and X-Payment and read either 402 name.
    app = make_app(wrap=_with_payment)
    async with client_for(app) as c:
        challenge = await c.post("/api/v1/chat/completions", json=CHAT)
        assert challenge.headers["payment-required"] == challenge.headers["x-payment-required"]
        signature = pay_v2(decode(challenge.headers["x-payment-required"]))
        headers = {"PAYMENT-SIGNATURE": signature, "X-Payment": signature}
        r = await c.post("/api/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 200 and decode(r.headers["payment-response"])["success"] is True
        again = await c.post("/api/v1/chat/completions", json=CHAT, headers=headers)
    assert again.status_code == 402 and again.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert emulator_requests(emulator) == 1
