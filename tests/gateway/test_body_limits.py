"""Request-size limits of the paid gateway and the ASGI middleware: 413 before the body is read, bounded memory.

The RSS test runs the paid gateway as a real process (``make dev``: anvil + on-chain facilitator + emulator) and
reads its ``VmRSS`` from ``/proc``; before the pricing cap, every unpaid upload was read whole (16 MiB) to price it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests._dev_gateway import DevGateway, dev_gateway
from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO
from x402_middleware import PaymentMiddleware, RouteConfig
from x402_middleware import _asgi_io as asgi_io

UPLOAD = 16 * 1024 * 1024
CHUNK = 64 * 1024
CONCURRENT = 32
MiB = 1024 * 1024

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def dev() -> Iterator[DevGateway]:
    with dev_gateway() as gw:
        yield gw


def _rss(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


async def _upload(url: str, path: str, size: int, *, chunked: bool) -> tuple[int, dict[str, Any], int]:
    """POST ``size`` bytes the way a real client does; stop sending once the answer arrives. Returns
    ``(status, JSON body, bytes sent)``."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    reader, writer = await asyncio.open_connection(host, port)
    framing = b"transfer-encoding: chunked\r\n" if chunked else f"content-length: {size}\r\n".encode()
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nhost: " + f"{host}:{port}".encode() + b"\r\n"
        b"content-type: application/json\r\n" + framing + b"\r\n"
    )
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    sent = 0
    piece = b'{"a":"' + b"x" * (CHUNK - 6)
    try:
        while sent < size and not answer.done():
            data = piece[: min(CHUNK, size - sent)]
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await writer.drain()
            sent += len(data)
        head = await asyncio.wait_for(answer, 60)
    except (ConnectionError, asyncio.IncompleteReadError):
        head = await asyncio.wait_for(answer, 60)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    writer.close()
    return status, json.loads(body), sent


async def _flood(url: str, chunked: bool) -> list[tuple[int, dict[str, Any], int]]:
    return await asyncio.gather(
        *[_upload(url, "/v1/chat/completions", UPLOAD, chunked=chunked) for _ in range(CONCURRENT)]
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_32_concurrent_16mb_uploads_get_413_and_memory_stays_flat(dev: DevGateway, chunked: bool) -> None:
    pid = dev.proc.pid
    with httpx.Client(base_url=dev.url) as c:  # warm up the paths a normal request takes
        assert c.post("/v1/chat/completions", json={"model": "openai/gpt-5.2", "messages": []}).status_code in (
            400,
            402,
        )
    before = _rss(pid)
    results = asyncio.run(_flood(dev.url, chunked))
    after = _rss(pid)
    assert [status for status, _, _ in results] == [413] * CONCURRENT
    # answered by the gateway's own body reader (PrepareOnce), before the payment layer would read it
    assert {body["code"] for _, body, _ in results} == {"PAYLOAD_TOO_LARGE"}
    assert "at most 2097152 bytes" in results[0][1]["message"]
    grew = f"RSS grew {(after - before) / MiB:.1f} MiB ({before / MiB:.0f} -> {after / MiB:.0f})"
    assert after - before < 64 * MiB, grew
    assert dev.proc.poll() is None
    print(f"\nRSS {before / MiB:.0f} -> {after / MiB:.0f} MiB, peak {_rss(pid, 'VmHWM') / MiB:.0f} MiB")


# The ASGI middleware on its own, with the receive side counted.


class CountingReceive:
    """An ASGI ``receive`` sending ``total`` bytes in ``chunk``-byte messages, counting what was taken."""

    def __init__(self, total: int, chunk: int = CHUNK, delay: float = 0.0) -> None:
        self.total, self.chunk, self.delay, self.taken = total, chunk, delay, 0

    async def __call__(self) -> dict[str, Any]:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = b"x" * min(self.chunk, self.total - self.taken)
        self.taken += len(data)
        return {"type": "http.request", "body": data, "more_body": self.taken < self.total}


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _middleware(**kwargs: Any) -> PaymentMiddleware:
    return PaymentMiddleware(
        _ok,
        routes={"POST /llm": RouteConfig(price=lambda r: "$0.001", price_body=True)},
        pay_to=PAY_TO,
        network="eip155:84532",
        facilitator=FakeFacilitator(),
        **kwargs,
    )


async def _call(mw: PaymentMiddleware, receive: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/llm", "headers": headers, "query_string": b""}
    await mw(scope, receive, send)
    start = sent[0]
    return start["status"], {
        "headers": dict(start["headers"]),
        "body": json.loads(sent[1]["body"]) if start["status"] != 200 else None,
    }


async def test_asgi_refuses_by_content_length_before_reading() -> None:
    receive = CountingReceive(UPLOAD)
    status, answer = await _call(_middleware(), receive, [(b"content-length", str(UPLOAD).encode())])
    assert status == 413 and answer["body"]["error"] == "request_body_too_large"
    assert "at most 1048576 bytes" in answer["body"]["message"] and receive.taken == 0


async def test_asgi_stops_reading_a_body_without_length_once_past_the_cap() -> None:
    receive = CountingReceive(UPLOAD)
    status, answer = await _call(_middleware(max_pricing_body=100_000), receive, [])
    assert status == 413 and answer["body"]["error"] == "request_body_too_large"
    assert 100_000 < receive.taken <= 100_000 + CHUNK
    at_the_cap, _ = await _call(_middleware(max_pricing_body=100_000), CountingReceive(100_000), [])
    assert at_the_cap == 402


async def test_asgi_bounds_concurrent_pricing_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_io, "PRICING_READ_WAIT", 0.3)
    mw = _middleware(max_pricing_reads=2)
    slow = [CountingReceive(10 * CHUNK, delay=0.1) for _ in range(2)]  # ~1 s each, holding both slots
    holders = [asyncio.ensure_future(_call(mw, r, [])) for r in slow]
    await asyncio.sleep(0.05)
    status, answer = await _call(mw, CountingReceive(10), [])
    assert status == 503 and answer["body"]["error"] == "pricing_busy"
    assert answer["headers"][b"retry-after"] == b"1"
    assert [s for s, _ in await asyncio.gather(*holders)] == [402, 402]
    queued = asyncio.ensure_future(_call(mw, CountingReceive(10), []))  # a slot is free again: served
    assert (await queued)[0] == 402


async def test_asgi_a_short_wait_for_a_slot_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    mw = _middleware(max_pricing_reads=1)
    holder = asyncio.ensure_future(_call(mw, CountingReceive(3 * CHUNK, delay=0.05), []))
    await asyncio.sleep(0.02)
    status, _ = await _call(mw, CountingReceive(10), [])  # waits ~0.15 s for the slot, well within the wait
    assert status == 402 and (await holder)[0] == 402


def test_max_pricing_reads_must_be_positive() -> None:
    from x402_middleware import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_pricing_reads"):
        _middleware(max_pricing_reads=0)
