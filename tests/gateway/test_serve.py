"""The gateway's uvicorn settings: X-Forwarded-For moves the client address only when it comes from a trusted proxy."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn

from examples.gateway.emulator import bind_loopback
from examples.gateway.serve import server_config


async def _echo_client(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["client"][0].encode()})


@pytest.mark.parametrize(("trusted", "seen"), [((), "127.0.0.1"), (("127.0.0.1",), "203.0.113.7")])
def test_forwarded_for_counts_only_from_a_trusted_proxy(trusted: tuple[str, ...], seen: str) -> None:
    config = server_config(_echo_client, trusted_proxies=trusted)
    config.lifespan = "off"
    server = uvicorn.Server(config)
    sock = bind_loopback(0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        assert httpx.get(url, headers={"X-Forwarded-For": "203.0.113.7"}).text == seen
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
