"""The ASGI middleware behind a real uvicorn on 127.0.0.1: SSE streams through after settlement."""

from __future__ import annotations

import time

import httpx

from tests._payments import decode, pay_v2
from tests._servers import uvicorn_server


def test_sse_streams_through_real_server_after_settlement() -> None:
    with uvicorn_server("tests.apps:streaming_app", factory=True) as url, httpx.Client(base_url=url) as c:
        assert c.get("/free").text == "free"
        r = c.get("/stream")
        assert r.status_code == 402
        sig = pay_v2(decode(r.headers["payment-required"]))
        t0 = time.monotonic()
        chunks: list[tuple[float, bytes]] = []
        with c.stream("GET", "/stream", headers={"PAYMENT-SIGNATURE": sig}) as resp:
            assert resp.status_code == 200
            assert decode(resp.headers["payment-response"])["success"] is True
            assert resp.headers["content-type"].startswith("text/event-stream")
            for chunk in resp.iter_raw():
                chunks.append((time.monotonic() - t0, chunk))
    body = b"".join(c for _, c in chunks)
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    # The first event arrives long before the stream ends (1.2 s): nothing was buffered.
    assert chunks[0][0] < 0.35 and chunks[-1][0] > 1.0
