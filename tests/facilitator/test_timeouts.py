"""A hung facilitator fails a call within the configured seconds (FacilitatorError), never holds it for a minute.

Real loopback servers: one accepts connections and never answers, one listens and never accepts (the kernel
completes the handshake, nobody reads the request), and TLS to the silent one hangs in the handshake,
which only ``connect_timeout`` bounds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests._payments import BASE_SEPOLIA_USDC, PAY_TO, decode, pay_v2
from x402_middleware import ConfigurationError, FacilitatorError, HTTPFacilitator, SyncHTTPFacilitator
from x402_middleware.models import PaymentPayload, PaymentRequirements, parse_payment_payload, parse_requirements

SLACK = 0.6  # scheduling noise on a busy 2-core machine


@pytest.fixture
def silent() -> Iterator[str]:
    """127.0.0.1:PORT that accepts and reads, and never writes a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture
def unaccepting() -> Iterator[str]:
    """127.0.0.1:PORT that listens and never calls accept()."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def _payment() -> tuple[PaymentPayload, PaymentRequirements]:
    accepted = {
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "1000",
        "payTo": PAY_TO,
        "asset": BASE_SEPOLIA_USDC,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"},
    }
    payload = decode(pay_v2({"x402Version": 2, "resource": {"url": "http://x/"}, "accepts": [accepted]}))
    return parse_payment_payload(payload), parse_requirements(accepted, 2)


LIMITS: dict[str, Any] = {"timeout": 0.4, "settle_timeout": 0.8, "connect_timeout": 0.3}


def _within(call: Callable[[], Any], seconds: float) -> float:
    t0 = time.monotonic()
    with pytest.raises(FacilitatorError):
        call()
    elapsed = time.monotonic() - t0
    assert seconds - 0.05 <= elapsed < seconds + SLACK, f"failed after {elapsed:.2f} s, configured {seconds} s"
    return elapsed


def test_defaults_fail_in_seconds_not_a_minute() -> None:
    for cls in (HTTPFacilitator, SyncHTTPFacilitator):
        fac = cls("http://127.0.0.1:9")
        assert (fac.connect_timeout, fac.timeout, fac.settle_timeout) == (5.0, 10.0, 30.0)
    with pytest.raises(ConfigurationError, match="settle_timeout"):
        HTTPFacilitator("http://127.0.0.1:9", settle_timeout=0)


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["silent", "unaccepting"])
async def test_async_facilitator_fails_within_its_limits(server: str, request: pytest.FixtureRequest) -> None:
    url = "http://" + request.getfixturevalue(server)
    payload, requirements = _payment()
    fac = HTTPFacilitator(url, **LIMITS)
    try:
        for call, seconds in (
            (lambda: fac.verify(payload, requirements), LIMITS["timeout"]),
            (fac.supported, LIMITS["timeout"]),
            (lambda: fac.settle(payload, requirements), LIMITS["settle_timeout"]),
        ):
            t0 = time.monotonic()
            with pytest.raises(FacilitatorError):
                await call()
            elapsed = time.monotonic() - t0
            assert seconds - 0.05 <= elapsed < seconds + SLACK, f"failed after {elapsed:.2f} s, configured {seconds}"
    finally:
        await fac.aclose()


@pytest.mark.anyio
async def test_async_tls_handshake_that_never_answers_is_bounded_by_connect_timeout(silent: str) -> None:
    fac = HTTPFacilitator("https://" + silent, timeout=5, settle_timeout=5, connect_timeout=0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(FacilitatorError, match="connect"):
            await fac.supported()
        assert time.monotonic() - t0 < 0.3 + SLACK
    finally:
        await fac.aclose()


@pytest.mark.parametrize("server", ["silent", "unaccepting"])
def test_sync_facilitator_fails_within_its_limits(server: str, request: pytest.FixtureRequest) -> None:
    url = "http://" + request.getfixturevalue(server)
    payload, requirements = _payment()
    fac = SyncHTTPFacilitator(url, **LIMITS)
    try:
        _within(lambda: fac.verify(payload, requirements), LIMITS["timeout"])
        _within(fac.supported, LIMITS["timeout"])
        _within(lambda: fac.settle(payload, requirements), LIMITS["settle_timeout"])
    finally:
        fac.close()


def test_sync_tls_handshake_that_never_answers_is_bounded_by_connect_timeout(silent: str) -> None:
    fac = SyncHTTPFacilitator("https://" + silent, timeout=5, settle_timeout=5, connect_timeout=0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(FacilitatorError, match="(?i)connect"):
            fac.supported()
        assert time.monotonic() - t0 < 0.3 + SLACK
    finally:
        fac.close()
