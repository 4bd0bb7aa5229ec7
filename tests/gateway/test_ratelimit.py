from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from starlette.applications import Starlette

from examples.gateway import GatewayConfig, RateLimit
from examples.gateway.ratelimit import SlidingWindow

from .conftest import client_for


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sliding_window_counts_per_key_and_slides() -> None:
    clock = Clock(3600 * 1000)  # the start of a window
    limiter = SlidingWindow(3, 60, clock=clock)
    assert [limiter.hit("a").allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("b").allowed  # another client has its own budget
    denied = limiter.hit("a")
    assert denied.remaining == 0 and denied.reset_ms == (clock.now + 60) * 1000
    clock.now += 60 + 30  # half-way into the next window: 3 x 0.5 = 1.5 still counted
    assert limiter.hit("a").allowed and not limiter.hit("a").allowed
    clock.now += 120  # both old windows are gone
    assert [limiter.hit("a").allowed for _ in range(4)] == [True, True, True, False]


def test_sliding_window_validates() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(0, 60)


anyio = pytest.mark.anyio


@anyio
async def test_health_and_catalog_limits_per_ip(make_app: Callable[..., Starlette]) -> None:
    app = make_app(health_rate_limit=RateLimit(2, 60), catalog_rate_limit=RateLimit(3, 3600))
    async with client_for(app, "10.0.0.1") as one, client_for(app, "10.0.0.2") as two:
        assert [(await one.get("/api/health")).status_code for _ in range(3)] == [200, 200, 429]
        r = await one.get("/api/health/live")
        assert r.status_code == 429 and r.json() == {"error": "Rate limit exceeded"}
        reset = int(r.headers["x-ratelimit-reset"])
        assert time.time() * 1000 < reset <= (time.time() + 61) * 1000
        assert r.headers["x-ratelimit-remaining"] == "0" and int(r.headers["retry-after"]) >= 1
        assert (await two.get("/api/health")).status_code == 200  # another IP
        # /v1/models and /api/pricing share the hourly budget, separate from health.
        statuses = [
            (await one.get(p)).status_code for p in ("/v1/models", "/api/pricing", "/api/v1/models", "/v1/models")
        ]
        assert statuses == [200, 200, 200, 429]
        # Paid inference has no platform quota.
        body = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
        assert [(await one.post("/v1/chat/completions", json=body)).status_code for _ in range(5)] == [200] * 5


@anyio
@pytest.mark.parametrize(
    ("trusted", "peer", "expected"),
    [
        ((), "127.0.0.1", [200, 429]),  # no trusted proxy: the header is ignored, both count for the peer
        (("127.0.0.1",), "127.0.0.1", [200, 429]),  # 10.0.0.1 is not trusted: it is the client, for both
        (("127.0.0.1", "10.0.0.0/8"), "127.0.0.1", [200, 200]),  # both proxies trusted: 198.51.100.x are clients
        (("10.0.0.0/8",), "203.0.113.9", [200, 429]),  # the header comes from an untrusted peer: ignored
    ],
)
async def test_forwarded_for_only_from_trusted_proxies(
    make_app: Callable[..., Starlette], trusted: tuple[str, ...], peer: str, expected: list[int]
) -> None:
    app = make_app(health_rate_limit=RateLimit(1, 60), trusted_proxies=trusted)
    async with client_for(app, ip=peer) as c:
        got = [
            (await c.get("/api/health", headers={"x-forwarded-for": f"198.51.100.{i}, 10.0.0.1"})).status_code
            for i in range(2)
        ]
    assert got == expected


def test_client_ip_reads_the_header_from_the_right() -> None:
    config = GatewayConfig(trusted_proxies=("10.0.0.0/8", "2001:db8::/32"))
    assert config.client_ip("10.0.0.5", "6.6.6.6, 203.0.113.7") == "203.0.113.7"  # the client's own hop is not believed
    assert config.client_ip("10.0.0.5", "203.0.113.7, 10.1.2.3") == "203.0.113.7"
    assert config.client_ip("2001:db8::1", "198.51.100.4") == "198.51.100.4"
    assert config.client_ip("192.0.2.1", "203.0.113.7") == "192.0.2.1"
    assert config.client_ip("10.0.0.5", "10.0.0.6, 10.0.0.7") == "10.0.0.6"
    with pytest.raises(ValueError, match="trusted_proxies"):
        GatewayConfig(trusted_proxies=("not-an-ip",))
