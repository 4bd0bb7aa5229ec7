"""Both payment header names at once (BlockRun's newer clients), and the twin 402 header, in ASGI and WSGI.

The payload's ``x402Version`` says v1 or v2, not the header that carried it (blockrun-clients.md §2.4).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, decode, pay_v1, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import PaymentMiddleware
from x402_middleware.wsgi import PaymentWSGIMiddleware

NETWORK = "eip155:84532"
ROUTES = {"GET /paid": "$0.001"}


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _wsgi_client() -> tuple[httpx.Client, SyncFakeFacilitator]:
    fac = SyncFakeFacilitator()
    mw = PaymentWSGIMiddleware(_wsgi_app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac)
    return httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://testserver"), fac


def _asgi_client() -> tuple[httpx.AsyncClient, FakeFacilitator]:
    fac = FakeFacilitator()
    mw = PaymentMiddleware(_app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://testserver"), fac


def _headers(kind: str, challenge: httpx.Response) -> dict[str, str]:
    v2 = pay_v2(decode(challenge.headers["payment-required"]))
    return {
        "both-v2": {"PAYMENT-SIGNATURE": v2, "X-Payment": v2},
        "x-payment-v2": {"X-Payment": v2},
        "signature-v1": {"PAYMENT-SIGNATURE": pay_v1(challenge.json())},
    }[kind]


CASES = [("both-v2", "payment-response"), ("x-payment-v2", "payment-response"), ("signature-v1", "x-payment-response")]


def _check_challenge(r: httpx.Response) -> None:
    assert r.status_code == 402
    assert r.headers["payment-required"] == r.headers["x-payment-required"]
    assert "X-PAYMENT-REQUIRED" in r.headers["access-control-expose-headers"]


def _check_paid(r: httpx.Response, response_header: str, settled: int) -> None:
    assert r.status_code == 200 and r.text == "ok"
    assert decode(r.headers[response_header])["success"] is True
    other = "x-payment-response" if response_header == "payment-response" else "payment-response"
    assert other not in r.headers and settled == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "response_header"), CASES)
async def test_asgi_decodes_once_and_answers_by_version(kind: str, response_header: str) -> None:
    c, fac = _asgi_client()
    async with c:
        challenge = await c.get("/paid")
        _check_challenge(challenge)
        r = await c.get("/paid", headers=_headers(kind, challenge))
    _check_paid(r, response_header, len(fac.settled))


@pytest.mark.parametrize(("kind", "response_header"), CASES)
def test_wsgi_decodes_once_and_answers_by_version(kind: str, response_header: str) -> None:
    c, fac = _wsgi_client()
    with c:
        challenge = c.get("/paid")
        _check_challenge(challenge)
        r = c.get("/paid", headers=_headers(kind, challenge))
    _check_paid(r, response_header, len(fac.settled))


@pytest.mark.anyio
async def test_two_different_payments_are_refused_with_a_reason() -> None:
    c, fac = _asgi_client()
    async with c:
        challenge = decode((await c.get("/paid")).headers["payment-required"])
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(challenge), "X-Payment": pay_v2(challenge)})
    assert r.status_code == 400 and r.json()["error"] == "invalid_payload"
    assert "different payments" in r.json()["message"] and fac.settled == []
