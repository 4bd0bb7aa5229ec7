"""Paid media calls on the dev chain (``make dev``: anvil, on-chain facilitator, emulator): each settles the catalog
price on chain, and only once the upstream accepted the call; balances are read back from anvil."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from tests._dev_gateway import DevGateway, dev_gateway
from x402_middleware import X402Auth
from x402_middleware.client import settlement_of

IMAGE = {"model": "google/nano-banana", "prompt": "a red kite", "n": 2}  # 2 x $0.039 + $0.001
MUSIC = {"model": "elevenlabs/music-v1", "prompt": "a short jingle", "duration": 10}  # 10 x $0.005 + $0.001
VIDEO = {"model": "openai/sora-2", "prompt": "a paper boat", "seconds": 4}  # 4 x $0.10 + $0.001


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway() as gw:
        yield gw


def _control(dev: DevGateway, method: str, rule: dict[str, Any] | None = None) -> None:
    httpx.request(method, dev.info["emulator_url"] + "/_control", json=rule, timeout=10).raise_for_status()


def _paid(dev: DevGateway, payer: int, path: str, body: dict[str, Any]) -> tuple[httpx.Response, int, str]:
    key = dev.info["payer_private_keys"][payer]
    address = Account.from_key(key).address
    before = dev.balance_of(address)
    with httpx.Client(base_url=dev.url, auth=X402Auth(key, max_amount_per_payment="$1"), timeout=30) as c:
        r = c.post(path, json=body)
    return r, before - dev.balance_of(address), address


@pytest.mark.parametrize(
    ("path", "body", "price"),
    [("/api/v1/images/generations", IMAGE, 79_000), ("/v1/audio/generations", MUSIC, 51_000)],
)
def test_paid_media_settles_the_catalog_price(dev: DevGateway, path: str, body: dict[str, Any], price: int) -> None:
    r, paid, payer = _paid(dev, 0, path, body)
    assert r.status_code == 200, r.text
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.payer == payer
    assert dev.receipt_status(settled.transaction) == 1 and paid == settled.amount == price
    magic = b"\x89PNG" if "images" in path else b"RIFF"
    items = r.json()["data"]
    assert [base64.b64decode(d["b64_json"])[:4] for d in items] == [magic] * len(items)


def test_a_paid_video_job_is_settled_at_submit_and_polled_for_free(dev: DevGateway) -> None:
    _control(dev, "POST", {"video_delay": 0.3})
    r, paid, _ = _paid(dev, 1, "/api/v1/videos/generations", VIDEO)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    settled = settlement_of(r)
    assert settled is not None and settled.success and paid == settled.amount == 401_000
    with httpx.Client(base_url=dev.url, timeout=30) as c:
        deadline = time.monotonic() + 10
        while (done := c.get(r.json()["poll_url"])).status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.status_code == 200 and done.json()["status"] == "completed"
        assert c.get(done.json()["data"][0]["url"]).content[:4] == b"\x89PNG"


def test_a_failed_upstream_is_not_charged(dev: DevGateway) -> None:
    _control(dev, "DELETE")
    _control(dev, "POST", {"fault": "500", "model": "gemini-2.5-flash-image"})
    try:
        r, paid, _ = _paid(dev, 2, "/v1/images/generations", IMAGE)
    finally:
        _control(dev, "DELETE")
    assert r.status_code == 502 and r.json()["code"] == "UPSTREAM_ERROR"
    assert paid == 0 and "payment-response" not in r.headers
