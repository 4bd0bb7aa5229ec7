"""The facilitator's keep-alive HTTP/1.1 client (``facilitator/_http.py``) against real servers on 127.0.0.1:
uvicorn (plain and TLS with a self-signed certificate) and a raw asyncio server scripted per test for the edge
cases (framings, 1xx, dropped keep-alive connections, oversized and malformed answers)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import re
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests._payments import decode, pay_v2
from tests._servers import process_with_url, uvicorn_server
from x402_middleware import FacilitatorError
from x402_middleware.facilitator import HTTPFacilitator
from x402_middleware.facilitator._http import AsyncHTTPClient, HTTPTransportError, ResponseTooLarge, uses_env_proxy
from x402_middleware.facilitator._rpc import AsyncRPC
from x402_middleware.models import parse_payment_payload, parse_requirements


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Every test on both loops: uvicorn deployments usually run the middleware on uvloop."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


# -- the uvicorn server ---------------------------------------------------------------------------------------


def create() -> Starlette:
    """Echo server: what it received and from which client port (one port = one connection)."""

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        if path.endswith("/slow"):
            await asyncio.sleep(float(request.query_params["s"]))
        if path.endswith("/chunked"):  # no Content-Length: uvicorn sends Transfer-Encoding: chunked
            size = request.query_params.get("size")

            async def parts() -> Any:
                for i in range(int(request.query_params["n"])):
                    yield b"y" * int(size) if size else f"{i},".encode()

            return StreamingResponse(parts(), media_type="text/plain")
        if path.endswith("/big"):
            return Response(b"x" * int(request.query_params["size"]))
        assert request.client is not None
        info = {
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "port": request.client.port,
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }
        return JSONResponse(info, headers={"connection": "close"} if path.endswith("/close") else None)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with uvicorn_server("tests.facilitator.test_http:create", factory=True) as url:
        yield url


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 only (no DNS names) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x402 test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.facilitator.test_http:create",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-access-log",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
    ]
    with process_with_url(args, pattern=re.compile(r"(https://127\.0\.0\.1:\d+)")) as url:
        yield url, cert


# -- the raw scripted server ----------------------------------------------------------------------------------

#: (connection index, request index on that connection, request bytes) -> what to do:
#: bytes to send and keep the connection, ("close", bytes) to send then close, None to close without answering,
#: ("later", bytes, seconds) to send and close that much later.
Script = Callable[[int, int, bytes], Any]


class RawServer:
    """An asyncio TCP server on 127.0.0.1 that reads HTTP/1.1 requests and answers what ``script`` says."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[tuple[int, int, bytes]] = []
        self.closed_by_peer = 0  # connections the client closed (EOF seen while waiting for a request)
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index, self.connections = self.connections, self.connections + 1
        try:
            for number in range(10**6):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_peer += 1
                    return
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                request = head + (await reader.readexactly(int(length.group(1))) if length else b"")
                self.requests.append((index, number, request))
                action = self.script(index, number, request)
                if action is None:
                    return
                if isinstance(action, bytes):
                    writer.write(action)
                    await writer.drain()
                    continue
                writer.write(action[1])
                await writer.drain()
                if action[0] == "later":
                    await asyncio.sleep(action[2])
                return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            self._tasks.discard(task)


def ok(body: bytes = b'{"ok":true}', *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def raw(
    script: Script, check: Callable[[RawServer, AsyncHTTPClient], Awaitable[None]], **kwargs: Any
) -> RawServer:
    async with RawServer(script) as srv:
        client = AsyncHTTPClient(srv.url, timeout=kwargs.pop("timeout", 5.0), **kwargs)
        try:
            await check(srv, client)
        finally:
            await client.aclose()
    return srv


# -- requests and keep-alive against uvicorn ------------------------------------------------------------------


@pytest.mark.anyio
async def test_json_post_with_prefix_query_headers_and_keep_alive(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    client = AsyncHTTPClient(f"{server}/base/?key=abc", headers={"X-Client": "one"})
    try:
        replies = [
            (
                await client.request(
                    "POST", f"/echo/{i}", body=b'{"n":%d}' % i, headers={"X-Req": str(i)}, idempotent=True
                )
            )
            for i in range(5)
        ]
        got = await client.request("GET", "/supported")
    finally:
        await client.aclose()
    echoes = [r.json() for r in replies]
    assert [r.status for r in replies] == [200] * 5 and got.status == 200
    assert [e["path"] for e in echoes] == [f"/base/echo/{i}" for i in range(5)]
    assert got.json()["path"] == "/base/supported" and got.json()["method"] == "GET" and got.json()["body"] == ""
    assert all(e["query"] == "key=abc" for e in echoes)
    assert [json.loads(e["body"]) for e in echoes] == [{"n": i} for i in range(5)]
    headers = echoes[3]["headers"]
    assert headers["host"] == f"127.0.0.1:{port}" and headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(b'{"n":3}'))
    assert headers["x-client"] == "one" and headers["x-req"] == "3"
    assert replies[0].headers["content-type"] == "application/json"
    assert len({e["port"] for e in echoes} | {got.json()["port"]}) == 1  # one kept-alive connection for all six


@pytest.mark.anyio
async def test_chunked_big_and_oversized_responses(server: str) -> None:
    client = AsyncHTTPClient(server, max_response_size=1_000_000)
    try:
        chunked = await client.request("GET", "/chunked?n=300")
        assert chunked.headers["transfer-encoding"] == "chunked" and "content-length" not in chunked.headers
        assert chunked.content == "".join(f"{i}," for i in range(300)).encode()
        exact = await client.request("GET", "/big?size=1000000")
        assert exact.content == b"x" * 1_000_000
        with pytest.raises(ResponseTooLarge):
            await client.request("GET", "/big?size=1000001")
        with pytest.raises(ResponseTooLarge):
            await client.request("GET", "/chunked?n=11&size=100000")
        assert (await client.request("GET", "/after")).json()["path"] == "/after"  # the client is still usable
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_connection_close_from_the_server_is_honoured(server: str) -> None:
    client = AsyncHTTPClient(server)
    try:
        ports = [(await client.request("GET", "/close")).json()["port"] for _ in range(3)]
        assert len(set(ports)) == 3 and client.open_connections == 0  # a new connection each time, none kept
        kept = [(await client.request("GET", "/keep")).json()["port"] for _ in range(3)]
        assert len(set(kept)) == 1 and client.open_connections == 1
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_pool_reuses_the_last_used_connection_and_expires_idle_ones(server: str) -> None:
    client = AsyncHTTPClient(server, keepalive_expiry=0.3)
    try:
        burst = await asyncio.gather(*(client.request("GET", "/burst") for _ in range(4)))
        assert len({r.json()["port"] for r in burst}) == 4 and client.open_connections == 4
        after = [(await client.request("GET", "/one")).json()["port"] for _ in range(5)]
        assert len(set(after)) == 1  # LIFO: the same warm connection each time, the others stay idle
        await asyncio.sleep(0.5)
        fresh = (await client.request("GET", "/late")).json()["port"]
        assert fresh not in after and client.open_connections == 1  # expired ones closed, a new one opened
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_200_concurrent_requests_over_at_most_8_connections(server: str) -> None:
    client = AsyncHTTPClient(server, max_connections=8)
    peak = 0

    async def one(i: int) -> dict[str, Any]:
        nonlocal peak
        response = await client.request("POST", "/echo", body=json.dumps({"i": i}).encode(), idempotent=True)
        peak = max(peak, client.open_connections)
        return response.json()  # type: ignore[no-any-return]

    try:
        echoes = await asyncio.gather(*(one(i) for i in range(200)))
    finally:
        await client.aclose()
    assert [json.loads(e["body"])["i"] for e in echoes] == list(range(200))
    assert 1 < len({e["port"] for e in echoes}) <= 8 and peak <= 8


@pytest.mark.anyio
async def test_timeout_drops_the_connection_and_the_next_request_works(server: str) -> None:
    client = AsyncHTTPClient(server, timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(HTTPTransportError, match="within 0.3 s"):
            await client.request("GET", "/slow?s=3")
        assert time.monotonic() - started < 2.0 and client.open_connections == 0
        assert (await client.request("GET", "/slow?s=0", timeout=5)).status == 200
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_waiting_for_a_free_connection_counts_in_the_timeout(server: str) -> None:
    client = AsyncHTTPClient(server, max_connections=1)
    try:
        slow = asyncio.ensure_future(client.request("GET", "/slow?s=0.5"))
        await asyncio.sleep(0.1)
        with pytest.raises(HTTPTransportError, match="within 0.2 s"):
            await client.request("GET", "/fast", timeout=0.2)
        assert (await slow).status == 200 and client.open_connections == 1
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_connect_failure_is_a_transport_error() -> None:
    async with RawServer(lambda *_: None) as srv:
        url = srv.url
    client = AsyncHTTPClient(url)  # that port is closed now
    with pytest.raises(HTTPTransportError, match="cannot connect"):
        await client.request("GET", "/")
    await client.aclose()
    with pytest.raises(HTTPTransportError, match="closed"):
        await client.request("GET", "/")


# -- https ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_https_with_a_trusted_self_signed_certificate(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    client = AsyncHTTPClient(url, verify=ssl.create_default_context(cafile=str(cert)))
    try:
        echoes = [(await client.request("POST", "/tls", body=b"{}")).json() for _ in range(3)]
    finally:
        await client.aclose()
    assert [e["path"] for e in echoes] == ["/tls"] * 3 and len({e["port"] for e in echoes}) == 1


@pytest.mark.anyio
async def test_https_refuses_unknown_certificates_and_wrong_hostnames(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    strict = AsyncHTTPClient(url)  # system CAs do not include the test certificate
    with pytest.raises(HTTPTransportError, match="CERTIFICATE_VERIFY_FAILED"):
        await strict.request("GET", "/")
    await strict.aclose()
    wrong_name = AsyncHTTPClient(
        url.replace("127.0.0.1", "localhost"), verify=ssl.create_default_context(cafile=str(cert))
    )
    with pytest.raises(HTTPTransportError, match="(?i)hostname|IP address mismatch|not valid for"):
        await wrong_name.request("GET", "/")  # the certificate names 127.0.0.1 only
    await wrong_name.aclose()
    unchecked = AsyncHTTPClient(url, verify=False)
    assert (await unchecked.request("GET", "/x")).json()["path"] == "/x"
    await unchecked.aclose()


# -- framings and edge cases against the raw server ------------------------------------------------------------


@pytest.mark.anyio
async def test_chunked_with_extensions_and_trailers_byte_by_byte_then_reuse() -> None:
    body = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    response = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    class Slow(RawServer):  # writes the first answer one byte at a time: the parser must wait at every point
        async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            self.connections += 1
            for i in range(len(response)):
                writer.write(response[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"second"))
            await writer.drain()
            await reader.read()
            writer.close()

    async with Slow(lambda *_: None) as srv:
        client = AsyncHTTPClient(srv.url)
        try:
            first = await client.request("GET", "/")
            second = await client.request("GET", "/")
        finally:
            await client.aclose()
    assert first.status == 200 and first.content == b"hello world" and second.content == b"second"
    assert srv.connections == 1  # the chunked answer (with 1xx and trailers) left the connection reusable


@pytest.mark.anyio
async def test_body_to_eof_http10_and_gzip() -> None:
    answers = {
        0: ("close", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + b'{"to":"eof"}'),
        1: b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nhttp",  # HTTP/1.0 without keep-alive: not reused
        2: ok(gzip.compress(b'{"zipped":1}'), "Content-Encoding: gzip"),
    }

    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        assert (await client.request("GET", "/")).json() == {"to": "eof"}
        assert client.open_connections == 0
        assert (await client.request("GET", "/")).content == b"http"
        assert (await client.request("GET", "/")).json() == {"zipped": 1}
        assert (await client.request("GET", "/")).json() == {"zipped": 1}

    srv = await raw(lambda conn, n, _: answers[min(conn, 2)], check)
    assert srv.connections == 3 and [n for _, n, _ in srv.requests] == [0, 0, 0, 1]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer, error",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000, ResponseTooLarge),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 + b"\r\n" * 2, ResponseTooLarge),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1500, ResponseTooLarge),
        (b"SMTP ready\r\n\r\n", HTTPTransportError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", HTTPTransportError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HTTPTransportError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", HTTPTransportError),
    ],
    ids=["length", "chunked", "eof", "not-http", "two-lengths", "bad-chunk", "truncated"],
)
async def test_oversized_and_malformed_answers(answer: bytes, error: type[Exception]) -> None:
    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        with pytest.raises(error):
            await client.request("GET", "/")
        assert client.open_connections == 0

    await raw(lambda *_: ("close", answer), check, max_response_size=1000)


@pytest.mark.anyio
async def test_facilitator_maps_transport_failures_to_facilitator_error() -> None:
    async with RawServer(lambda *_: ("close", b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n")) as srv:
        facilitator = HTTPFacilitator(srv.url)
        with pytest.raises(FacilitatorError, match="over 4194304"):
            await facilitator.supported()
        await facilitator.aclose()
    rpc = AsyncRPC(srv.url)  # the server is gone
    with pytest.raises(FacilitatorError, match="unreachable"):
        await rpc("eth_chainId")
    await rpc.aclose()


@pytest.mark.anyio
async def test_idle_connection_closed_by_the_server_is_detected_before_reuse() -> None:
    # The server answers, then closes 50 ms later without saying so; the client notices while idle.
    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        assert (await client.request("POST", "/settle", body=b"{}")).status == 200
        await asyncio.sleep(0.3)
        assert (await client.request("POST", "/settle", body=b"{}")).status == 200  # not idempotent: no retry

    srv = await raw(lambda *_: ("later", ok(), 0.05), check)
    assert srv.connections == 2 and [(c, n) for c, n, _ in srv.requests] == [(0, 0), (1, 0)]


def drop_second_request(conn: int, number: int, request: bytes) -> bytes | None:
    """Answer the first request of each connection; take the second and close (the keep-alive race)."""
    return ok() if number == 0 else None


@pytest.mark.anyio
async def test_race_idempotent_request_is_retried_once_on_a_fresh_connection() -> None:
    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        assert (await client.request("POST", "/verify", body=b"{}")).status == 200
        assert (await client.request("POST", "/verify", body=b"{}", idempotent=True)).status == 200

    srv = await raw(drop_second_request, check)
    assert [(c, n) for c, n, _ in srv.requests] == [(0, 0), (0, 1), (1, 0)]


@pytest.mark.anyio
async def test_race_non_idempotent_request_is_not_retried() -> None:
    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        assert (await client.request("POST", "/settle", body=b"{}")).status == 200
        with pytest.raises(HTTPTransportError, match="closed before a response"):
            await client.request("POST", "/settle", body=b"{}")

    srv = await raw(drop_second_request, check)
    assert [(c, n) for c, n, _ in srv.requests] == [(0, 0), (0, 1)]  # sent once, never again


@pytest.mark.anyio
async def test_no_retry_on_a_fresh_connection_and_at_most_one_retry() -> None:
    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        with pytest.raises(HTTPTransportError, match="closed before a response"):
            await client.request("GET", "/", idempotent=True)  # a fresh connection that fails is not retried
        assert len(srv.requests) == 1
        srv.script = lambda conn, number, _: ok() if conn == 1 and number == 0 else None
        assert (await client.request("GET", "/", idempotent=True)).status == 200
        with pytest.raises(HTTPTransportError):
            await client.request("GET", "/", idempotent=True)  # reused conn dropped, the fresh one too: give up

    srv = await raw(lambda *_: None, check)
    assert [(c, n) for c, n, _ in srv.requests] == [(0, 0), (1, 0), (1, 1), (2, 0)]


@pytest.mark.anyio
async def test_settle_through_http_facilitator_is_sent_once_when_the_connection_drops() -> None:
    answer = json.dumps({"isValid": True, "payer": "0x" + "11" * 20}).encode()
    accept = {
        "scheme": "exact",
        "network": "eip155:8453",
        "amount": "1000",
        "payTo": "0x" + "22" * 20,
        "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    payload = parse_payment_payload(
        decode(pay_v2({"x402Version": 2, "resource": {"url": "http://x/"}, "accepts": [accept]}))
    )
    requirements = parse_requirements(accept, 2)
    async with RawServer(lambda conn, number, _: ok(answer) if number == 0 else None) as srv:
        facilitator = HTTPFacilitator(f"{srv.url}/facilitator")
        try:
            assert (await facilitator.verify(payload, requirements)).is_valid
            assert (await facilitator.verify(payload, requirements)).is_valid  # re-sent on a fresh connection
            with pytest.raises(FacilitatorError, match="POST .*/facilitator/settle failed"):
                await facilitator.settle(payload, requirements)
        finally:
            await facilitator.aclose()
    paths = [(c, n, request.split(b" ")[1]) for c, n, request in srv.requests]
    assert paths == [
        (0, 0, b"/facilitator/verify"),
        (0, 1, b"/facilitator/verify"),
        (1, 0, b"/facilitator/verify"),
        (1, 1, b"/facilitator/settle"),
    ]


@pytest.mark.anyio
async def test_rpc_resends_reads_but_not_transactions_when_the_connection_drops() -> None:
    def script(conn: int, number: int, request: bytes) -> bytes | None:
        return ok(b'{"jsonrpc":"2.0","id":1,"result":"0x2105"}') if number == 0 else None

    async with RawServer(script) as srv:
        rpc = AsyncRPC(srv.url)
        try:
            assert await rpc("eth_chainId") == "0x2105"
            assert await rpc("eth_getTransactionReceipt", "0x" + "ab" * 32) == "0x2105"  # re-sent once
            with pytest.raises(FacilitatorError, match="eth_sendRawTransaction"):
                await rpc("eth_sendRawTransaction", "0x02f8")
        finally:
            await rpc.aclose()
    methods = [(c, n, json.loads(request.partition(b"\r\n\r\n")[2])["method"]) for c, n, request in srv.requests]
    assert methods == [
        (0, 0, "eth_chainId"),
        (0, 1, "eth_getTransactionReceipt"),
        (1, 0, "eth_getTransactionReceipt"),
        (1, 1, "eth_sendRawTransaction"),
    ]


@pytest.mark.anyio
async def test_aclose_closes_every_socket() -> None:
    async def check(srv: RawServer, client: AsyncHTTPClient) -> None:
        await asyncio.gather(*(client.request("GET", "/") for _ in range(5)))
        assert srv.connections == client.open_connections > 1
        await client.aclose()
        assert client.open_connections == 0
        for _ in range(100):
            if srv.closed_by_peer == srv.connections:
                break
            await asyncio.sleep(0.01)
        assert srv.closed_by_peer == srv.connections  # the server saw every connection end

    await raw(lambda *_: ok(), check)  # five requests at once, no idle connection yet: five connections


def test_request_headers_cannot_inject_lines() -> None:
    client = AsyncHTTPClient("http://127.0.0.1:9")
    with pytest.raises(HTTPTransportError):
        client._head("GET", "/", None, {"X-A": "b\r\nX-Injected: 1"})
    with pytest.raises(HTTPTransportError):
        client._head("GET", "/", None, {"X A": "b"})
    head = client._head("POST", "/p", b"{}", {"Content-Length": "99", "Transfer-Encoding": "chunked"})
    assert b"Content-Length: 2\r\n" in head and b"99" not in head and b"chunked" not in head


def test_basic_auth_and_host_from_the_url() -> None:
    head = AsyncHTTPClient("https://user:p%40ss@rpc.example/v3/key")._head("POST", "", b"{}", None).decode()
    assert head.startswith("POST /v3/key HTTP/1.1\r\nHost: rpc.example\r\n")
    assert "Authorization: Basic dXNlcjpwQHNz\r\n" in head  # base64("user:p@ss")
    assert (
        AsyncHTTPClient("http://[::1]:8080")
        ._head("GET", "/x", None, None)
        .startswith(b"GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n")
    )
    assert (
        AsyncHTTPClient("http://node:80/rpc/")
        ._head("POST", "", b"{}", None)
        .startswith(b"POST /rpc/ HTTP/1.1\r\nHost: node\r\n")
    )  # a JSON-RPC URL is used as given; default port not shown
    assert AsyncHTTPClient("https://h:443")._head("GET", "", None, None).startswith(b"GET / HTTP/1.1\r\nHost: h\r\n")


# -- which transport is used ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, url, proxied",
    [
        ({}, "https://x402.org/facilitator", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://x402.org/facilitator", True),
        ({"https_proxy": "http://proxy:3128"}, "http://x402.org/facilitator", False),  # only https goes through it
        ({"ALL_PROXY": "http://proxy:3128"}, "http://rpc.example", True),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "x402.org"}, "https://x402.org/facilitator", False),
        ({"HTTP_PROXY": "http://proxy:3128", "no_proxy": ".example"}, "http://rpc.example:8545", False),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8545", False),  # loopback is always direct
    ],
)
def test_env_proxies_fall_back_to_httpx(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, proxied: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert uses_env_proxy(url) is proxied
    facilitator = HTTPFacilitator(url)
    rpc = AsyncRPC(url)
    expected = httpx.AsyncClient if proxied else AsyncHTTPClient
    assert isinstance(facilitator._client, expected) and isinstance(rpc._client, expected)


@pytest.mark.anyio
async def test_an_injected_httpx_client_is_used_and_left_open(server: str) -> None:
    seen: list[str] = []

    async def log(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    async with httpx.AsyncClient(event_hooks={"request": [log]}) as client:
        facilitator = HTTPFacilitator(server, client=client)
        with pytest.raises(FacilitatorError, match="no 'kinds' list"):  # the echo server is no facilitator
            await facilitator.supported()
        await facilitator.aclose()
        assert not client.is_closed and seen == ["GET /supported"]
