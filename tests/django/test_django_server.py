"""The Django middleware behind real servers: uvicorn (Django ASGI, async mode) and gunicorn (Django WSGI, sync mode)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests._payments import PAYER_KEY, decode, pay_v2
from tests._servers import process_with_url, uvicorn_server
from x402_middleware import X402Auth, settlement_of

ENV = {"DJANGO_SETTINGS_MODULE": "tests.django.settings", "STREAM_GAP": "0.4"}


@pytest.fixture(scope="module", params=["uvicorn-asgi", "gunicorn-wsgi"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    if request.param == "uvicorn-asgi":
        with uvicorn_server("tests.django.asgi:application", env=ENV, extra_args=["--lifespan", "off"]) as url:
            yield url, "/astream"
    else:
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            "127.0.0.1:0",
            "--threads",
            "4",
            "--no-control-socket",
            "--graceful-timeout",
            "1",
            "tests.django.wsgi:application",
        ]
        with process_with_url(args, env=ENV) as url:
            yield url, "/stream"


def test_stream_is_settled_then_flows_unbuffered(server: tuple[str, str]) -> None:
    url, path = server
    with httpx.Client(base_url=url) as c:
        assert c.get("/free").json() == {"free": True}
        sig = pay_v2(decode(c.get(path).headers["payment-required"]))
        t0 = time.monotonic()
        chunks: list[tuple[float, bytes]] = []
        with c.stream("GET", path, headers={"PAYMENT-SIGNATURE": sig}) as resp:
            assert resp.status_code == 200 and decode(resp.headers["payment-response"])["success"] is True
            for chunk in resp.iter_raw():
                chunks.append((time.monotonic() - t0, chunk))
    assert b"".join(c for _, c in chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    assert chunks[0][0] < 0.5 and chunks[-1][0] > 1.0


def test_paying_client_and_replay(server: tuple[str, str]) -> None:
    url, _ = server
    auth = X402Auth(PAYER_KEY, max_amount_per_payment="$0.01")
    with httpx.Client(base_url=url, auth=auth) as c:
        r = c.get("/paid")
        assert r.status_code == 200 and r.json() == {"ok": True}
        settlement = settlement_of(r)
        assert settlement is not None and settlement.success
        replay = httpx.get(f"{url}/paid", headers={"PAYMENT-SIGNATURE": r.request.headers["payment-signature"]})
    assert replay.status_code == 402 and replay.json()["error"] == "invalid_exact_evm_nonce_already_used"
