"""The WSGI middleware behind a real gunicorn (gthread worker) on 127.0.0.1: streaming and exactly-once."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests._payments import PAYER_KEY, decode, pay_v2
from tests._servers import process_with_url
from x402_middleware import X402Auth, settlement_of


@pytest.fixture(scope="module")
def gunicorn_url() -> Iterator[str]:
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-b",
        "127.0.0.1:0",
        "--threads",
        "8",
        "--no-control-socket",
        "--graceful-timeout",
        "1",
        "tests.wsgi.server_apps:app",
    ]
    with process_with_url(args, env={"SETTLE_DELAY": "0.05"}) as url:
        yield url


def test_sse_streams_through_gunicorn_after_settlement(gunicorn_url: str) -> None:
    with httpx.Client(base_url=gunicorn_url) as c:
        assert c.get("/free").text == "free"
        r = c.get("/stream")
        assert r.status_code == 402
        sig = pay_v2(decode(r.headers["payment-required"]))
        t0 = time.monotonic()
        chunks: list[tuple[float, bytes]] = []
        with c.stream("GET", "/stream", headers={"PAYMENT-SIGNATURE": sig}) as resp:
            assert resp.status_code == 200 and decode(resp.headers["payment-response"])["success"] is True
            for chunk in resp.iter_raw():
                chunks.append((time.monotonic() - t0, chunk))
    assert b"".join(c for _, c in chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    # The first event arrives long before the stream ends (1.2 s): nothing was buffered.
    assert chunks[0][0] < 0.5 and chunks[-1][0] > 1.0


def test_concurrent_requests_with_one_payment_are_served_and_settled_once(gunicorn_url: str) -> None:
    with httpx.Client(base_url=gunicorn_url) as c:
        before = c.get("/settled").json()["settled"]
        sig = pay_v2(decode(c.get("/paid").headers["payment-required"]))
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda _: httpx.get(f"{gunicorn_url}/paid", headers={"PAYMENT-SIGNATURE": sig}), range(8))
            )
        after = c.get("/settled").json()["settled"]
    assert sorted(r.status_code for r in results) == [200] + [402] * 7
    assert [r.json() for r in results if r.status_code == 200] == [{"paid": True}]
    assert after - before == 1


def test_real_paying_client_against_gunicorn(gunicorn_url: str) -> None:
    auth = X402Auth(PAYER_KEY, max_amount_per_payment="$0.01")
    with httpx.Client(base_url=gunicorn_url, auth=auth) as c:
        r = c.get("/paid")
    assert r.status_code == 200 and r.json() == {"paid": True}
    settlement = settlement_of(r)
    assert settlement is not None and settlement.success and auth.spent == 1000
