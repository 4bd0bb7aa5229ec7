"""The dev gateway on Redis (``python -m examples.gateway.dev --redis-url ...``), and its start-up warning without it."""

from __future__ import annotations

import logging

import httpx
import pytest
import redis

from examples.gateway.production import payment_store
from tests._dev_gateway import dev_gateway
from x402_middleware import X402Auth
from x402_middleware.client import settlement_of
from x402_middleware.stores.redis import RedisStore

CHAT = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}


def test_without_a_shared_store_the_dev_gateway_warns_payments_are_per_process(
    caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    with caplog.at_level(logging.WARNING):
        assert payment_store(None) is None
    assert "remembered per process" in caplog.text and "--redis-url" in caplog.text
    caplog.clear()
    assert isinstance(payment_store(redis_url), RedisStore) and "per process" not in caplog.text


def test_dev_gateway_with_redis_url_records_its_payments_in_redis(redis_url: str) -> None:
    with dev_gateway("--redis-url", redis_url) as gw:
        key = gw.info["payer_private_keys"][0]
        with httpx.Client(base_url=gw.url, auth=X402Auth(key, max_amount_per_payment="$0.10"), timeout=30) as c:
            r = c.post("/api/v1/chat/completions", json=CHAT)
        output = "".join(gw.output)
    assert r.status_code == 200, r.text
    settled = settlement_of(r)
    assert settled is not None and settled.success
    assert "payment store: Redis" in output and "remembered per process" not in output
    values = [
        v for k in redis.Redis.from_url(redis_url).scan_iter("x402:*") if (v := redis.Redis.from_url(redis_url).get(k))
    ]
    assert f"settled|{settled.transaction}".encode() in values
