"""Deeply nested JSON against real server processes: a 400 with a reason, never a dead process.

Importing eth-account imports py_ecc, which raises the recursion limit to 100,000, so the C JSON parser is no
longer stopped by ``RecursionError``: before the depth check, ``[`` x 100,000 killed the process with SIGSEGV.
Each server runs in its own process, so a crash shows as the process gone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from tests._chain import start_dev_chain
from tests._dev_gateway import DevGateway, dev_gateway
from tests._servers import Live, live_process
from x402_middleware.devchain import DevChain

DEPTHS = (10_000, 100_000, 1_000_000)
CHAT = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "hi [{"}], "max_tokens": 16}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture(scope="module")
def chain() -> Iterator[DevChain]:
    dev_chain = start_dev_chain("base-sepolia", facilitators=1)
    try:
        yield dev_chain
    finally:
        dev_chain.stop()


def _post_deep(live_url: str, path: str, depth: int) -> httpx.Response:
    with httpx.Client(base_url=live_url, timeout=60) as c:
        return c.post(path, content=nested(depth), headers={"content-type": "application/json"})


def _assert_alive(live: Live, r: httpx.Response | None, depth: int) -> None:
    assert live.alive(), f"depth {depth} killed the server: {live.describe()}"
    assert r is not None


def test_price_body_route_behind_the_onchain_facilitator(chain: DevChain) -> None:
    env = {
        "RPC_URL": chain.rpc_url,
        "FACILITATOR_KEY": chain.facilitator_keys[0],
        "NETWORK": chain.network,
        "PAY_TO": chain.pay_to,
        "MAX_PRICING_BODY": str(4 << 20),  # so that every depth reaches the JSON parser, not the size cap
    }
    args = [sys.executable, "-m", "uvicorn", "tests._deep_json_apps:priced_body_app", "--factory"]
    args += ["--host", "127.0.0.1", "--port", "0", "--no-access-log"]
    with live_process(args, env=env) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        limits = c.get("/recursion-limit").json()
        assert limits == {"recursion_limit": 100_000, "eth_account": True}  # the raised limit, in the server
        for depth in DEPTHS:
            try:
                r: httpx.Response | None = c.post("/chat", content=nested(depth))
            except httpx.TransportError:
                r = None
            _assert_alive(live, r, depth)
            assert r is not None
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "request_body_too_deep" and "256 levels" in r.json()["message"]
            normal = c.post("/chat", json={"big": True})
            assert normal.status_code == 402 and "payment-required" in normal.headers


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway() as gw:
        yield gw


def test_dev_gateway_chat_completions(dev: DevGateway) -> None:
    with httpx.Client(base_url=dev.url, timeout=60) as c:
        for depth in DEPTHS:
            try:
                r: httpx.Response | None = c.post("/v1/chat/completions", content=nested(depth))
            except httpx.TransportError:
                r = None
            assert dev.proc.poll() is None, f"depth {depth} killed the gateway: {''.join(dev.output)[-3000:]}"
            assert r is not None
            assert r.status_code == 400, r.text
            # refused by the gateway's own body reader (prepare.py), before the payment layer would read it
            assert r.json()["code"] == "REQUEST_BODY_TOO_DEEP" and "256 levels" in r.json()["message"]
            assert c.get("/api/health").status_code == 200
            normal = c.post("/v1/chat/completions", json=CHAT)
            assert normal.status_code == 402 and "payment-required" in normal.headers


def test_facilitator_server(chain: DevChain) -> None:
    args = [sys.executable, "-m", "x402_middleware.facilitator", "--rpc-url", chain.rpc_url, "--port", "0"]
    args += ["--network", chain.network, "--key", chain.facilitator_keys[0], "--token", "secret"]
    auth = {"authorization": "Bearer secret"}
    with live_process(args) as live, httpx.Client(base_url=live.url, headers=auth, timeout=60) as c:
        for depth in DEPTHS:
            for path in ("/verify", "/settle"):
                try:
                    r: httpx.Response | None = c.post(path, content=nested(depth))
                except httpx.TransportError:
                    r = None
                _assert_alive(live, r, depth)
                assert r is not None
                assert r.status_code == 400, r.text
                message = r.json()["message"]
                # bodies over the server's 64 KiB cap are refused unread; the rest by their depth
                assert ("256 levels" in message) if len(nested(depth)) <= 64 * 1024 else ("larger than" in message)
            assert c.get("/supported").status_code == 200


def test_upstream_emulator() -> None:
    args = [sys.executable, "-m", "examples.gateway.emulator", "--port", "0"]
    keys = {"authorization": "Bearer sk-test", "x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
    with live_process(args) as live, httpx.Client(base_url=live.url, headers=keys, timeout=60) as c:
        for depth in DEPTHS:
            for path in ("/v1/chat/completions", "/v1/messages"):
                try:
                    r: httpx.Response | None = c.post(path, content=nested(depth))
                except httpx.TransportError:
                    r = None
                _assert_alive(live, r, depth)
                assert r is not None
                assert r.status_code == 400, r.text
                assert "JSON" in r.json()["error"]["message"]  # each provider's own "could not parse" wording
            assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
