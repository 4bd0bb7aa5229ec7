"""``AsyncHTTP1Transport`` under ``httpx.AsyncClient`` against real servers on 127.0.0.1: uvicorn (plain and TLS with
a self-signed certificate) and raw asyncio servers for the edge cases (silent peers, truncated and malformed answers).
Each failure must be the httpx exception httpcore raises for it: callers (the example gateway) classify by type."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests._servers import uvicorn_server
from tests.facilitator.test_http import RawServer, ok, tls_server  # noqa: F401 - tls_server: its uvicorn TLS fixture
from x402_middleware import AsyncHTTP1Transport


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both loops: uvicorn deployments usually run on uvloop, whose transports fail differently."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


def create() -> Starlette:
    """``/echo`` (what arrived, from which client port), ``/sse`` (n events, ``gap`` s apart), ``/slow``."""

    async def echo(request: Request) -> Response:
        assert request.client is not None
        body = b"".join([part async for part in request.stream()])
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "port": request.client.port,
                "headers": dict(request.headers),
                "size": len(body),
                "body": body[:1000].decode("latin-1"),
            }
        )

    async def sse(request: Request) -> Response:
        assert request.client is not None
        n, gap, port = int(request.query_params["n"]), float(request.query_params.get("gap", 0)), request.client.port

        async def events() -> AsyncIterator[bytes]:
            for i in range(n):
                yield f"data: {json.dumps({'i': i, 'port': port})}\n\n".encode()
                await asyncio.sleep(gap)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params["s"]))
        return JSONResponse({"slept": True})

    return Starlette(
        routes=[Route("/echo", echo, methods=["GET", "POST", "PUT"]), Route("/sse", sse), Route("/slow", slow)]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with uvicorn_server("tests.test_transport:create", factory=True) as url:
        yield url


class Silent:
    """Accepts TCP connections and never reads or answers: a TLS handshake or a large upload never completes."""

    def __init__(self) -> None:
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0, limit=1024)
        self.url = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.transport.abort()
        self._server.close()


def port_of(response: httpx.Response) -> int:
    return int(response.json()["port"])


# -- requests, streams and the pool ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_json_requests_share_one_kept_alive_connection(server: str) -> None:
    transport = AsyncHTTP1Transport()
    async with httpx.AsyncClient(transport=transport, base_url=server) as client:
        replies = [
            await client.post("/echo", params={"q": str(i)}, json={"n": i}, headers={"X-Req": str(i)}) for i in range(4)
        ]
        got = await client.get("/echo")
        assert transport.open_connections == 1
    assert transport.open_connections == 0  # the client's aclose closed the transport
    echoes = [r.json() for r in replies]
    assert [r.status_code for r in replies] == [200] * 4 and replies[0].http_version == "HTTP/1.1"
    assert replies[0].reason_phrase == "OK" and replies[0].headers["content-type"] == "application/json"
    assert [json.loads(e["body"]) for e in echoes] == [{"n": i} for i in range(4)]
    assert [e["query"] for e in echoes] == [f"q={i}" for i in range(4)]
    headers = echoes[2]["headers"]
    assert headers["host"] == server.removeprefix("http://") and headers["x-req"] == "2"
    assert headers["content-length"] == str(len(b'{"n":2}')) and "transfer-encoding" not in headers
    assert got.json()["method"] == "GET" and got.json()["size"] == 0
    assert len({e["port"] for e in echoes} | {got.json()["port"]}) == 1


@pytest.mark.anyio
async def test_sse_line_by_line_then_the_connection_is_reused(server: str) -> None:
    transport = AsyncHTTP1Transport()
    async with httpx.AsyncClient(transport=transport, base_url=server) as client:
        async with client.stream("GET", "/sse", params={"n": 20}) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            lines = [line async for line in response.aiter_lines()]
        events = [json.loads(line.removeprefix("data: ")) for line in lines if line]
        assert [e["i"] for e in events] == list(range(20)) and lines.count("") == 20
        assert transport.open_connections == 1
        after = await client.get("/echo")
    assert port_of(after) == events[0]["port"]  # read to the end: back in the pool and reused


@pytest.mark.anyio
async def test_a_stream_closed_at_its_last_event_is_still_reused(server: str) -> None:
    """An SSE reader stops at its last event, before the chunked terminator: the drain in aclose keeps the connection."""
    transport = AsyncHTTP1Transport()
    async with httpx.AsyncClient(transport=transport, base_url=server) as client:
        for _ in range(3):
            async with client.stream("GET", "/sse", params={"n": 3}) as response:
                async for line in response.aiter_lines():
                    if line and json.loads(line.removeprefix("data: "))["i"] == 2:
                        last = json.loads(line.removeprefix("data: "))
                        break
            assert transport.open_connections == 1
        after = await client.get("/echo")
    assert port_of(after) == last["port"]  # one connection for all three streams and the request after them


@pytest.mark.anyio
async def test_a_stream_closed_early_closes_its_connection(server: str) -> None:
    transport = AsyncHTTP1Transport()
    async with httpx.AsyncClient(transport=transport, base_url=server) as client:
        async with client.stream("GET", "/sse", params={"n": 50, "gap": 0.01}) as response:
            async for line in response.aiter_lines():
                first = json.loads(line.removeprefix("data: "))
                break
        assert transport.open_connections == 0  # unread body: closed, never handed to another request
        after = await client.get("/echo")
        assert port_of(after) != first["port"] and transport.open_connections == 1


@pytest.mark.anyio
async def test_streamed_upload_is_sent_chunked(server: str) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 10_000
            if i % 10 == 0:
                await asyncio.sleep(0)

    async with httpx.AsyncClient(transport=AsyncHTTP1Transport(), base_url=server) as client:
        streamed = (await client.post("/echo", content=pieces())).json()
        known = (await client.put("/echo", content=b"x" * 300_000)).json()  # large bytes body: Content-Length
    assert streamed["headers"]["transfer-encoding"] == "chunked" and "content-length" not in streamed["headers"]
    assert streamed["size"] == 500_000 and streamed["body"] == "A" * 1000
    assert known["headers"]["content-length"] == "300000" and known["size"] == 300_000
    assert known["port"] == streamed["port"]


@pytest.mark.anyio
async def test_200_concurrent_requests_over_at_most_8_connections(server: str) -> None:
    transport = AsyncHTTP1Transport(max_connections=8)
    peak = 0

    async def one(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        nonlocal peak
        response = await client.post("/echo", json={"i": i})
        peak = max(peak, transport.open_connections)
        return response.json()  # type: ignore[no-any-return]

    async with httpx.AsyncClient(transport=transport, base_url=server) as client:
        echoes = await asyncio.gather(*(one(client, i) for i in range(200)))
    assert [json.loads(e["body"])["i"] for e in echoes] == list(range(200))
    assert 1 < len({e["port"] for e in echoes}) <= 8 and peak <= 8


# -- timeouts: each phase its own httpx exception -------------------------------------------------------------


@pytest.mark.anyio
async def test_read_timeout_waiting_for_the_answer_and_mid_stream(server: str) -> None:
    transport = AsyncHTTP1Transport()
    async with httpx.AsyncClient(transport=transport, base_url=server, timeout=httpx.Timeout(5, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.get("/slow", params={"s": 2})
        assert caught.value.request.url.path == "/slow" and transport.open_connections == 0
        async with client.stream("GET", "/sse", params={"n": 3, "gap": 1}) as response:
            lines = response.aiter_lines()
            assert (await lines.__anext__()).startswith("data: ")  # the first event, then a 1 s gap
            with pytest.raises(httpx.ReadTimeout):
                async for _ in lines:
                    pass
        assert transport.open_connections == 0
        assert (await client.get("/slow", params={"s": 0})).json() == {"slept": True}


@pytest.mark.anyio
async def test_pool_timeout_while_every_connection_is_in_use(server: str) -> None:
    transport = AsyncHTTP1Transport(max_connections=1)
    async with httpx.AsyncClient(transport=transport, base_url=server, timeout=httpx.Timeout(5, pool=0.2)) as client:
        async with client.stream("GET", "/sse", params={"n": 2, "gap": 0.5}):
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/echo")
        assert (await client.get("/echo")).status_code == 200  # the closed stream gave its slot back


@pytest.mark.anyio
async def test_connect_timeout_when_the_tls_handshake_never_completes() -> None:
    async with (
        Silent() as silent,
        httpx.AsyncClient(transport=AsyncHTTP1Transport(verify=False), timeout=httpx.Timeout(5, connect=0.2)) as client,
    ):
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(f"https://{silent.url}/")


@pytest.mark.anyio
async def test_write_timeout_when_the_peer_takes_no_more_bytes() -> None:
    async with Silent() as silent:
        transport = AsyncHTTP1Transport()
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, write=0.3)) as client:
            with pytest.raises(httpx.WriteTimeout):  # more than the loopback socket buffers hold
                await client.post(f"http://{silent.url}/", content=b"x" * (64 << 20))
            assert transport.open_connections == 0


@pytest.mark.anyio
async def test_cancelling_a_request_frees_its_connection_slot(server: str) -> None:
    transport = AsyncHTTP1Transport(max_connections=1)
    async with httpx.AsyncClient(transport=transport, base_url=server) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):  # how the gateway bounds the wait for a first byte
                await client.get("/slow", params={"s": 2})
        assert transport.open_connections == 0
        assert (await client.get("/echo", timeout=httpx.Timeout(5, pool=0.5))).status_code == 200


# -- failures -------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_connection_refused_is_a_connect_error() -> None:
    async with Silent() as silent:
        url = f"http://{silent.url}/"
    async with httpx.AsyncClient(transport=AsyncHTTP1Transport()) as client:  # that port is closed now
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(url)
    assert caught.value.request.url == url


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer, message",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40, "closed the connection mid-response"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789",
            "closed the connection mid-response",
        ),
        (b"", "Server disconnected without sending a response."),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "invalid Content-Length"),
    ],
    ids=["truncated-length", "truncated-chunked", "no-answer", "not-http", "two-lengths"],
)
async def test_broken_answers_are_remote_protocol_errors(answer: bytes, message: str) -> None:
    async with RawServer(lambda *_: ("close", answer) if answer else None) as srv:
        transport = AsyncHTTP1Transport()
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.RemoteProtocolError, match=re.escape(message)):
                await client.get(srv.url)
            assert transport.open_connections == 0


@pytest.mark.anyio
async def test_content_encoding_is_left_to_httpx_and_1xx_and_eof_bodies_work() -> None:
    zipped = gzip.compress(b'{"zipped":1}')
    answers = [
        ok(zipped, "Content-Encoding: gzip", "Set-Cookie: a=1", "Set-Cookie: b=2"),
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(b"after hints"),
        ("close", b"HTTP/1.0 200 OK\r\n\r\nto the end"),
    ]
    async with RawServer(lambda conn, n, _: answers[n]) as srv:
        transport = AsyncHTTP1Transport()
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.get(srv.url)
            assert first.json() == {"zipped": 1} and first.headers.get_list("set-cookie") == ["a=1", "b=2"]
            assert (await client.get(srv.url)).text == "after hints"
            last = await client.get(srv.url)
            assert last.text == "to the end" and last.http_version == "HTTP/1.0"
            assert transport.open_connections == 0
    assert srv.connections == 1  # the first two answers kept the connection


@pytest.mark.anyio
async def test_a_get_is_resent_once_when_the_kept_alive_connection_was_dropped_but_a_post_is_not() -> None:
    once_per_connection = RawServer(lambda conn, n, _: ok() if n == 0 else None)
    async with once_per_connection as srv, httpx.AsyncClient(transport=AsyncHTTP1Transport()) as client:
        assert (await client.get(srv.url)).status_code == 200
        assert (await client.get(srv.url)).status_code == 200  # dropped on conn 0, re-sent on conn 1
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
            await client.post(srv.url, json={})
    assert [(c, n, r.split(b" ")[0]) for c, n, r in srv.requests] == [
        (0, 0, b"GET"),
        (0, 1, b"GET"),
        (1, 0, b"GET"),
        (1, 1, b"POST"),
    ]


# -- https ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_https_with_a_self_signed_certificate(tls_server: tuple[str, Path]) -> None:  # noqa: F811
    url, cert = tls_server  # the facilitator client's TLS echo server (tests/facilitator/test_http.py)
    transport = AsyncHTTP1Transport(verify=ssl.create_default_context(cafile=str(cert)))
    async with httpx.AsyncClient(transport=transport, base_url=url) as client:
        ports = [port_of(await client.post("/echo", json={"i": i})) for i in range(3)]
        async with client.stream("GET", "/chunked", params={"n": 300}) as response:
            streamed = b"".join([part async for part in response.aiter_bytes()])
        ports.append(port_of(await client.get("/after")))
    assert len(set(ports)) == 1 and streamed == "".join(f"{i}," for i in range(300)).encode()
    async with httpx.AsyncClient(transport=AsyncHTTP1Transport()) as client:  # system CAs: not trusted
        with pytest.raises(httpx.ConnectError, match="(?i)certificate"):
            await client.get(f"{url}/echo")


# -- the example gateway's choice -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, ours",
    [
        ({}, True),
        ({"HTTPS_PROXY": "http://proxy.invalid:3128"}, False),  # httpx's transport, which speaks to the proxy
        ({"HTTPS_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "upstream.invalid"}, True),
        ({"HTTP_PROXY": "http://proxy.invalid:3128"}, True),  # applies to http:// upstreams only
    ],
)
def test_the_gateway_uses_this_transport_unless_a_proxy_applies(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], ours: bool
) -> None:
    from examples.gateway import GatewayConfig, emulator_pools, load_catalog
    from examples.gateway.service import Gateway

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    catalog = load_catalog()
    gateway = Gateway(GatewayConfig(catalog=catalog, pools=emulator_pools("https://upstream.invalid", catalog)))
    assert isinstance(gateway.client._transport, AsyncHTTP1Transport) is ours
