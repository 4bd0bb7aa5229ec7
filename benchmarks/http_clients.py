"""HTTP client libraries for our two outbound paths, measured in one run: client CPU per request and p50/p99.

Paths (each at C=1 and C=32; C = requests in flight at once from one event loop):

* ``settle``: the facilitator path, ``POST /settle`` with a ~1 KB JSON body over keep-alive to the loopback
  facilitator double (``_fixtures.facilitator_double``, uvicorn + uvloop + httptools), reading the small JSON reply;
* ``chat``: the gateway's upstream path, the gateway's own non-streamed ``POST /v1/chat/completions`` (body and
  headers built by its provider code) to the upstream emulator (``python -m examples.gateway.emulator``);
* ``sse``: the same with ``"stream": true``, ~40 SSE events, read line by line and left at ``data: [DONE]``
  (before the chunked terminator, as the gateway does), so a client must still reuse the connection.

Candidates: httpx on its default transport (httpcore; pool limits raised to the concurrency), httpx over
``httpx-aiohttp`` (aiohttp's pool and C parser under httpx's API), aiohttp's ``ClientSession`` directly,
httpx2 (pydantic's maintained httpx fork, httpcore2) when installed, and our own stack when it is in the tree
(``AsyncHTTPClient`` for ``settle``; ``httpx`` + ``AsyncHTTP1Transport`` for ``chat``/``sse``, through
``client.post`` and, as the gateway did, straight to the transport). A candidate whose package is missing is
skipped. The servers are pinned to CPU 1, this process (every client, one uvloop event loop) to CPU 0. Each
(path, C) runs the candidates in interleaved rounds (A B C ... A B C ...) after an untimed warm-up each; CPU per
request is this process's user + system time over the timed requests (``time.process_time``), so it includes
the event loop's own work, the same for every candidate. Progress goes to stderr, the table to stdout::

    .venv/bin/python benchmarks/http_clients.py                  # ~60-90 s
    .venv/bin/python benchmarks/http_clients.py --rounds 5 --json
    .venv/bin/python benchmarks/http_clients.py --paths settle --candidates aiohttp,ours
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

import httpx
from _common import (
    PYTHON,
    Server,
    base_parser,
    emit_json,
    log,
    pin,
    print_table,
    summarize,
    uvicorn_command,
)

SERVER_CPU, CLIENT_CPU = 1, 0
FREE_MODEL = "nvidia/nemotron-3.5-lightning"
#: 37 words: with the emulator's "Echo (model):" prefix a streamed reply is 39 content events + role + finish + [DONE]
PROMPT = " ".join(f"word{i}" for i in range(37))
PATHS = ("settle", "chat", "sse")
#: Requests per candidate per round, by (path, concurrency).
PER_ROUND = {
    ("settle", 1): 400,
    ("settle", 32): 1600,
    ("chat", 1): 400,
    ("chat", 32): 1600,
    ("sse", 1): 100,
    ("sse", 32): 320,
}
UVICORN_LOOP = ("--loop", "uvloop", "--http", "httptools")
POOL = 64  # connections a client may keep: above the highest concurrency, as a tuned pool would be


@dataclass
class Wire:
    """The three requests, as bytes and headers built once before timing."""

    settle_url: str
    settle_body: bytes
    chat_url: str
    chat_body: bytes
    sse_body: bytes
    chat_headers: dict[str, str]
    settle_headers: dict[str, str] = field(
        default_factory=lambda: {"content-type": "application/json", "accept": "application/json"}
    )


def _settle_body() -> bytes:
    """A /settle body of the real shape and size (an EIP-3009 authorization and its requirements)."""
    auth = {
        "from": "0x" + "1" * 40,
        "to": "0x" + "2" * 40,
        "value": "2000",
        "validAfter": "0",
        "validBefore": "1900000000",
        "nonce": "0x" + "ab" * 32,
    }
    requirements = {
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "2000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x" + "2" * 40,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"},
    }
    payload = {
        "x402Version": 2,
        "accepted": requirements,
        "payload": {"signature": "0x" + "cd" * 65, "authorization": auth},
    }
    return json.dumps({"x402Version": 2, "paymentPayload": payload, "paymentRequirements": requirements}).encode()


def _gateway_request(emulator_url: str, stream: bool) -> tuple[str, bytes, dict[str, str]]:
    """``(url, body, headers)`` the gateway sends upstream for a free chat call, built by its own provider code."""
    from examples.gateway.config import GatewayConfig, emulator_pools
    from examples.gateway.providers.upstream import encode_json
    from examples.gateway.service import CHAT, Gateway

    body: dict[str, Any] = {"model": FREE_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
    if stream:
        body["stream"] = True
    gateway = Gateway(GatewayConfig(pools=emulator_pools(emulator_url)))
    try:
        call = gateway.prepare(CHAT, body).call
        endpoint = gateway.pools.endpoints[call.model.pool][0]
        provider = gateway.pools.providers[endpoint.kind]
        url, payload = provider.build(endpoint, call)
        return url, encode_json(payload), provider.headers(endpoint)
    finally:
        asyncio.run(gateway.aclose())


# -- candidates -------------------------------------------------------------------------------------------------
class Candidate:
    """One client library: the three calls (each raises unless it got a 200 and its whole answer) and aclose."""

    name = "?"
    paths: tuple[str, ...] = PATHS

    async def settle(self, wire: Wire) -> None:
        raise NotImplementedError

    async def chat(self, wire: Wire) -> None:
        raise NotImplementedError

    async def sse(self, wire: Wire) -> int:
        """Read the stream up to ``data: [DONE]``; the number of ``data:`` events read."""
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


def _check(status: int, content: bytes) -> None:
    if status != 200 or not content.startswith(b"{"):
        raise RuntimeError(f"unexpected answer {status}: {content[:200]!r}")


class HttpxCandidate(Candidate):
    """Anything with httpx's ``AsyncClient`` API (httpx on any transport, httpx2)."""

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client

    async def settle(self, wire: Wire) -> None:
        response = await self.client.post(wire.settle_url, content=wire.settle_body, headers=wire.settle_headers)
        _check(response.status_code, response.content)

    async def chat(self, wire: Wire) -> None:
        response = await self.client.post(wire.chat_url, content=wire.chat_body, headers=wire.chat_headers)
        _check(response.status_code, response.content)

    async def sse(self, wire: Wire) -> int:
        events = 0
        async with self.client.stream("POST", wire.chat_url, content=wire.sse_body, headers=wire.chat_headers) as r:
            if r.status_code != 200:
                raise RuntimeError(f"stream answered {r.status_code}")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    events += 1
                    if line == "data: [DONE]":
                        break
        return events

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpCandidate(Candidate):
    """aiohttp's ``ClientSession`` directly."""

    name = "aiohttp ClientSession"

    def __init__(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=30, sock_connect=5),
            auto_decompress=True,
        )

    async def settle(self, wire: Wire) -> None:
        async with self.session.post(wire.settle_url, data=wire.settle_body, headers=wire.settle_headers) as r:
            _check(r.status, await r.read())

    async def chat(self, wire: Wire) -> None:
        async with self.session.post(wire.chat_url, data=wire.chat_body, headers=wire.chat_headers) as r:
            _check(r.status, await r.read())

    async def sse(self, wire: Wire) -> int:
        events = 0
        async with self.session.post(wire.chat_url, data=wire.sse_body, headers=wire.chat_headers) as r:
            if r.status != 200:
                raise RuntimeError(f"stream answered {r.status}")
            async for raw in r.content:
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    events += 1
                    if line == b"data: [DONE]":
                        break
        return events

    async def aclose(self) -> None:
        await self.session.close()


class OursCandidate(Candidate):
    """Today's own stack: ``AsyncHTTPClient`` for settle, the httpx transport for the gateway's calls."""

    def __init__(self, wire: Wire, *, direct: bool) -> None:
        from x402_middleware.facilitator._http import AsyncHTTPClient

        self.name = "ours: direct to AsyncHTTP1Transport" if direct else "ours: AsyncHTTPClient / httpx+AsyncHTTP1"
        self.direct = direct
        base = wire.settle_url.removesuffix("/settle")
        self.json = AsyncHTTPClient(base, max_connections=POOL, timeout=30)
        self.transport: Any = None
        if _installed("x402_middleware.transport"):  # the httpx transport, gone since the gateway moved to aiohttp
            from x402_middleware.transport import AsyncHTTP1Transport  # type: ignore[import-not-found,unused-ignore]

            self.transport = AsyncHTTP1Transport(max_connections=POOL, keepalive_expiry=30)
        else:
            self.name = "ours: AsyncHTTPClient"
            self.paths = ("settle",)
        self.client = httpx.AsyncClient(transport=self.transport)
        self.url = httpx.URL(wire.chat_url)
        self.timeout = httpx.Timeout(30, connect=5).as_dict()

    async def settle(self, wire: Wire) -> None:
        # the facilitator client has one way only: both "ours" rows send settle through it
        response = await self.json.request("POST", "/settle", body=wire.settle_body, headers=wire.settle_headers)
        _check(response.status, response.content)

    async def _send(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """What the gateway's ``Upstream.post`` did: an httpx.Request handed straight to the transport."""
        request = httpx.Request("POST", self.url, headers=headers, content=body, extensions={"timeout": self.timeout})
        response: httpx.Response = await self.transport.handle_async_request(request)
        response.request = request
        return response

    async def chat(self, wire: Wire) -> None:
        if not self.direct:
            response = await self.client.post(wire.chat_url, content=wire.chat_body, headers=wire.chat_headers)
        else:
            response = await self._send(wire.chat_body, wire.chat_headers)
            await response.aread()
        _check(response.status_code, response.content)

    async def sse(self, wire: Wire) -> int:
        events = 0
        if not self.direct:
            stream = self.client.stream("POST", wire.chat_url, content=wire.sse_body, headers=wire.chat_headers)
            async with stream as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        events += 1
                        if line == "data: [DONE]":
                            break
            return events
        response = await self._send(wire.sse_body, wire.chat_headers)
        try:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events += 1
                    if line == "data: [DONE]":
                        break
        finally:
            await response.aclose()
        return events

    async def aclose(self) -> None:
        await self.json.aclose()
        await self.client.aclose()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def candidates(wire: Wire, wanted: set[str] | None) -> list[Candidate]:
    """Every candidate whose packages are installed (``wanted``: keys to keep, e.g. ``{"aiohttp", "ours"}``)."""
    made: list[tuple[str, Callable[[], Candidate]]] = [
        (
            "httpx",
            lambda: HttpxCandidate(
                "httpx (httpcore)",
                httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL, keepalive_expiry=30),
                    timeout=httpx.Timeout(30, connect=5),
                ),
            ),
        ),
    ]
    if _installed("httpx_aiohttp") and _installed("aiohttp"):

        def over_aiohttp() -> Candidate:
            from httpx_aiohttp import AiohttpTransport

            limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL, keepalive_expiry=30)
            client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=httpx.Timeout(30, connect=5))
            return HttpxCandidate("httpx + httpx-aiohttp", client)

        made.append(("httpx-aiohttp", over_aiohttp))
    if _installed("aiohttp"):
        made.append(("aiohttp", AiohttpCandidate))
    if _installed("httpx2"):

        def fork() -> Candidate:
            import httpx2

            limits = httpx2.Limits(max_connections=POOL, max_keepalive_connections=POOL, keepalive_expiry=30)
            return HttpxCandidate(
                "httpx2 (httpcore2)", httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(30, connect=5))
            )

        made.append(("httpx2", fork))
    made.append(("ours", lambda: OursCandidate(wire, direct=False)))
    if _installed("x402_middleware.transport"):
        made.append(("ours-direct", lambda: OursCandidate(wire, direct=True)))
    return [make() for key, make in made if wanted is None or key in wanted]


# -- measuring --------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One candidate on one (path, C), accumulated over its rounds."""

    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    events: int = 0


async def run(call: Callable[[], Awaitable[int | None]], count: int, concurrency: int, cell: Cell | None) -> None:
    """``count`` calls from ``concurrency`` workers; latencies and this process's CPU into ``cell``."""
    left = count
    latencies: list[float] = []
    events = 0

    async def worker() -> None:
        nonlocal left, events
        while left > 0:
            left -= 1
            started = time.perf_counter()
            seen = await call()
            latencies.append(time.perf_counter() - started)
            events += seen or 0

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu
    if cell is not None:
        cell.latencies += latencies
        cell.cpu_s += cpu
        cell.events += events


def _call(candidate: Candidate, path: str, wire: Wire) -> Callable[[], Awaitable[int | None]]:
    if path == "settle":
        return lambda: candidate.settle(wire)
    if path == "chat":
        return lambda: candidate.chat(wire)
    return lambda: candidate.sse(wire)


async def measure(
    wire: Wire, paths: list[str], levels: list[int], rounds: int, scale: float, wanted: set[str] | None
) -> tuple[list[str], dict[tuple[str, int, str], Cell]]:
    clients = candidates(wire, wanted)
    cells: dict[tuple[str, int, str], Cell] = {}
    try:
        for path in paths:
            for c in levels:
                n = max(c, int(PER_ROUND[(path, c)] * scale))
                log(f"{path}, C={c}: warm-up, then {rounds} x {n} requests per candidate, interleaved")
                active = [client for client in clients if path in client.paths]
                for client in active:
                    await run(_call(client, path, wire), max(c * 4, n // 4), c, None)
                for r in range(rounds):
                    for client in active:
                        cell = cells.setdefault((path, c, client.name), Cell())
                        await run(_call(client, path, wire), n, c, cell)
                    log(f"  round {r + 1}/{rounds} done")
    finally:
        for client in clients:
            await client.aclose()
    return [client.name for client in clients], cells


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per (path, C) (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the requests per round (default 1)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated levels, of 1 and 32 (default 1,32)")
    parser.add_argument(
        "--candidates", default="", help="comma-separated: httpx, httpx-aiohttp, aiohttp, httpx2, ours, ours-direct"
    )
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    wanted = {c for c in args.candidates.split(",") if c} or None
    pin(CLIENT_CPU)
    log(f"servers on CPU {SERVER_CPU}, clients (this process, one uvloop loop) on CPU {CLIENT_CPU}")
    facilitator = Server(
        uvicorn_command("benchmarks._fixtures:facilitator_double", factory=True, extra=UVICORN_LOOP), cpu=SERVER_CPU
    )
    emulator = Server([PYTHON, "-m", "examples.gateway.emulator", "--port", "0"], cpu=SERVER_CPU)
    with facilitator, emulator:
        chat_url, chat_body, chat_headers = _gateway_request(emulator.url, stream=False)
        _, sse_body, _ = _gateway_request(emulator.url, stream=True)
        wire = Wire(f"{facilitator.url}/settle", _settle_body(), chat_url, chat_body, sse_body, chat_headers)
        import uvloop

        names, cells = uvloop.run(measure(wire, paths, levels, args.rounds, args.scale, wanted))
    report(names, cells, paths, levels, args)


def report(
    names: list[str], cells: dict[tuple[str, int, str], Cell], paths: list[str], levels: list[int], args: Any
) -> None:
    rows: list[list[Any]] = []
    figures: dict[str, Any] = {}
    best: list[str] = []
    for path in paths:
        for c in levels:
            here = [n for n in names if (path, c, n) in cells]
            cpu = {n: cells[(path, c, n)].cpu_s / len(cells[(path, c, n)].latencies) * 1e6 for n in here}
            floor = min(cpu.values())
            best.append(f"{path} C={c}: {min(cpu, key=lambda n: cpu[n])}")
            for name in here:
                cell = cells[(path, c, name)]
                stats = summarize(cell.latencies, scale=1e3)
                events = cell.events / len(cell.latencies) if path == "sse" else None
                rows.append(
                    [
                        path,
                        c,
                        name,
                        len(cell.latencies),
                        f"{cpu[name]:,.0f}",
                        f"{cpu[name] / floor:.2f}x",
                        f"{stats['p50']:.2f}",
                        f"{stats['p99']:.2f}",
                        "" if events is None else f"{events:.0f}",
                    ]
                )
                figures[f"{path}/C={c}/{name}"] = {
                    "cpu_us_per_request": cpu[name],
                    "latency_ms": stats,
                    "events": events,
                }
    print_table(
        ["path", "C", "client", "n", "CPU µs/req", "vs best", "p50 ms", "p99 ms", "SSE events"],
        rows,
        title=f"HTTP clients, {args.rounds} interleaved rounds; servers on CPU {SERVER_CPU}, clients on CPU {CLIENT_CPU} "
        f"(load {os.getloadavg()[0]:.2f})",
    )
    print("\nleast client CPU per request: " + "; ".join(best))
    if args.json:
        emit_json({"benchmark": "http_clients", "rounds": args.rounds, "figures": figures})


if __name__ == "__main__":
    main()
