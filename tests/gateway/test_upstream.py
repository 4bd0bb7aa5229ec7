"""The gateway's upstream calls (``examples/gateway/providers/upstream.py``, aiohttp) against real servers on 127.0.0.1:
uvicorn (plain and TLS with a self-signed certificate) and raw asyncio servers for the edge cases (silent peers,
dropped keep-alive connections, encoded bodies, a proxy). What the pools rely on: kept-alive connections are
reused (also after an SSE stream left at ``data: [DONE]``), timeouts per phase, a POST is never sent twice, TLS is
checked, and ``HTTP(S)_PROXY``/``NO_PROXY`` apply on the same code path."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self, cast

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from examples.gateway.providers.upstream import Upstream, UpstreamResponse, is_connect_timeout, session
from examples.gateway.sse import aiter_events
from tests._servers import uvicorn_server
from tests.facilitator.test_http import RawServer, ok, tls_server  # noqa: F401 - tls_server: its uvicorn TLS fixture


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both loops: uvicorn deployments usually run on uvloop, whose transports fail differently."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


def create() -> Starlette:
    """``/echo`` (what arrived, from which client port), ``/sse`` (n events then ``[DONE]``, ``gap`` s apart), ``/slow``."""

    async def echo(request: Request) -> Response:
        assert request.client is not None
        body = await request.body()
        return JSONResponse({"port": request.client.port, "headers": dict(request.headers), "body": body.decode()})

    async def sse(request: Request) -> Response:
        assert request.client is not None
        n, gap, port = int(request.query_params["n"]), float(request.query_params.get("gap", 0)), request.client.port

        async def events() -> AsyncIterator[bytes]:
            for i in range(n):
                yield f"data: {json.dumps({'i': i, 'port': port})}\n\n".encode()
                await asyncio.sleep(gap)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params["s"]))
        return JSONResponse({"slept": True})

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/sse", sse, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with uvicorn_server("tests.gateway.test_upstream:create", factory=True) as url:
        yield url


class _Provider:
    signed = False  # not a SigV4 (Bedrock) provider: the URL is sent as given

    def headers(self, endpoint: object) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json", "x-provider": "test"}


PROVIDER, ENDPOINT = cast(Any, _Provider()), cast(Any, object())


async def post(
    upstream: Upstream, url: str, payload: Any = None, *, seconds: float = 5, connect: float = 5, stream: bool = False
) -> UpstreamResponse:
    return await upstream.post(PROVIDER, ENDPOINT, url, payload or {}, seconds, connect, stream=stream)


async def events_until_done(response: UpstreamResponse) -> list[dict[str, Any]]:
    """What the providers do: events until ``data: [DONE]``, left there (the chunked terminator still unread)."""
    seen = []
    async for event in aiter_events(response.aiter_lines()):
        if event.data == "[DONE]":
            break
        seen.append(json.loads(event.data))
    return seen


def port_of(response: UpstreamResponse) -> int:
    return int(json.loads(response.content)["port"])


class Silent:
    """Accepts TCP connections and never reads or answers: a TLS handshake never completes."""

    def __init__(self) -> None:
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.url = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.transport.abort()
        self._server.close()


# -- connections ------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_json_calls_share_one_kept_alive_connection(server: str) -> None:
    upstream = Upstream()
    try:
        replies = [await post(upstream, f"{server}/echo", {"n": i, "text": "é"}) for i in range(4)]
    finally:
        await upstream.aclose()
    echoes = [json.loads(r.content) for r in replies]
    assert [r.status_code for r in replies] == [200] * 4 and replies[0].headers["Content-Type"] == "application/json"
    assert [json.loads(e["body"]) for e in echoes] == [{"n": i, "text": "é"} for i in range(4)]
    headers = echoes[0]["headers"]
    assert headers["x-provider"] == "test" and headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len('{"n":0,"text":"é"}'.encode())) and "transfer-encoding" not in headers
    assert len({e["port"] for e in echoes}) == 1
    assert all(0 < r.elapsed < 5 for r in replies)


@pytest.mark.anyio
async def test_a_stream_left_at_done_before_the_chunked_terminator_keeps_its_connection(server: str) -> None:
    upstream = Upstream()
    try:
        ports = set()
        for _ in range(3):
            response = await post(upstream, f"{server}/sse?n=3", stream=True)
            assert response.headers["transfer-encoding"] == "chunked"
            try:
                events = await events_until_done(response)
            finally:
                await response.aclose()
            assert [e["i"] for e in events] == [0, 1, 2]
            ports.add(events[0]["port"])
        ports.add(port_of(await post(upstream, f"{server}/echo")))
    finally:
        await upstream.aclose()
    assert len(ports) == 1  # three streams and the call after them over one connection


@pytest.mark.anyio
async def test_a_stream_closed_early_closes_its_connection(server: str) -> None:
    upstream = Upstream()
    try:
        response = await post(upstream, f"{server}/sse?n=50&gap=0.01", stream=True)
        async for event in aiter_events(response.aiter_lines()):
            first = json.loads(event.data)
            break
        await response.aclose()  # most of the body unread: closed, never handed to another request
        assert port_of(await post(upstream, f"{server}/echo")) != first["port"]
    finally:
        await upstream.aclose()


@pytest.mark.anyio
async def test_a_post_is_never_sent_twice_when_a_kept_alive_connection_was_dropped() -> None:
    async with RawServer(lambda conn, n, _: ok() if n == 0 else None) as srv:
        upstream = Upstream()
        try:
            assert (await post(upstream, srv.url)).status_code == 200
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await post(upstream, srv.url)  # the server dropped it on receipt: the pool fails over instead
        finally:
            await upstream.aclose()
    assert [(c, n) for c, n, _ in srv.requests] == [(0, 0), (0, 1)]


# -- timeouts, failures, encodings ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_read_timeout_waiting_for_the_answer_and_mid_stream(server: str) -> None:
    upstream = Upstream()
    try:
        with pytest.raises(TimeoutError) as caught:
            await post(upstream, f"{server}/slow?s=2", seconds=0.2)
        assert not is_connect_timeout(caught.value)
        response = await post(upstream, f"{server}/sse?n=3&gap=1", seconds=0.2, stream=True)
        try:
            lines = response.aiter_lines()
            assert (await lines.__anext__()).startswith("data: ")  # the first event, then a 1 s gap
            with pytest.raises(TimeoutError):
                async for _ in lines:
                    pass
        finally:
            await response.aclose()
        assert json.loads((await post(upstream, f"{server}/slow?s=0")).content) == {"slept": True}
    finally:
        await upstream.aclose()


@pytest.mark.anyio
async def test_connect_timeout_when_the_tls_handshake_never_completes() -> None:
    async with Silent() as silent:
        upstream = Upstream()
        try:
            with pytest.raises(TimeoutError) as caught:
                await post(upstream, f"https://{silent.url}/x", connect=0.2)
            assert is_connect_timeout(caught.value)
        finally:
            await upstream.aclose()


@pytest.mark.anyio
async def test_connection_refused_is_a_client_error() -> None:
    async with RawServer(lambda *_: None) as srv:
        url = srv.url
    upstream = Upstream()
    try:
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(upstream, url)  # that port is closed now
    finally:
        await upstream.aclose()


@pytest.mark.anyio
async def test_gzip_and_deflate_bodies_are_decoded_and_a_stream_too() -> None:
    body = b'{"zipped":1}'
    answers = [
        ok(gzip.compress(body), "Content-Encoding: gzip"),
        ok(zlib.compress(body), "Content-Encoding: deflate"),
        ok(gzip.compress(b"data: {}\n\ndata: [DONE]\n\n"), "Content-Encoding: gzip", "Content-Type: text/event-stream"),
    ]
    async with RawServer(lambda conn, n, _: answers[n]) as srv:
        upstream = Upstream()
        try:
            assert (await post(upstream, srv.url)).content == body
            assert (await post(upstream, srv.url)).content == body
            response = await post(upstream, srv.url, stream=True)
            try:
                assert await events_until_done(response) == [{}]
            finally:
                await response.aclose()
        finally:
            await upstream.aclose()
    assert srv.connections == 1


# -- https and proxies -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_https_with_a_self_signed_certificate(tls_server: tuple[str, Path]) -> None:  # noqa: F811
    url, cert = tls_server
    trusting = Upstream(session(ssl.create_default_context(cafile=str(cert))))
    default = Upstream()  # the CAs httpx trusts by default: not the test certificate
    try:
        assert (await post(trusting, f"{url}/echo")).status_code == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(default, f"{url}/echo")
    finally:
        await trusting.client.close()
        await default.aclose()


@pytest.mark.anyio
async def test_env_proxies_apply_on_the_same_code_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    async with (
        RawServer(lambda *_: ok(b'{"via":"proxy"}')) as proxy,
        RawServer(lambda *_: ok(b'{"via":"direct"}')) as direct,
    ):
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost")
        upstream = Upstream()
        try:
            assert (await post(upstream, "http://upstream.invalid/v1/chat")).content == b'{"via":"proxy"}'
            assert (await post(upstream, direct.url.replace("127.0.0.1", "localhost"))).content == b'{"via":"direct"}'
        finally:
            await upstream.aclose()
    assert proxy.requests[0][2].startswith(b"POST http://upstream.invalid/v1/chat HTTP/1.1\r\n")
    assert len(proxy.requests) == 1 and len(direct.requests) == 1
