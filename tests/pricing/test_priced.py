"""A policy that describes what one request buys (``Priced``), and an outer layer's parsed body (``PRICING_BODY``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, decode, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import ConfigurationError, PaymentMiddleware, Priced, RouteConfig, TokenAmount
from x402_middleware.asgi import PRICING_BODY
from x402_middleware.pricing import PaymentOption, PaymentOptions, PaymentRequest
from x402_middleware.wsgi import PaymentWSGIMiddleware

NETWORK = "eip155:84532"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _by_n(request: PaymentRequest) -> Priced:
    n = int(request.query.get("n", "1"))
    return Priced(TokenAmount(1000 * n), f"{n} forecast(s)")


async def _by_n_async(request: PaymentRequest) -> Priced:
    return _by_n(request)


def _asgi(routes: dict[str, Any], app: Any = _app) -> httpx.AsyncClient:
    mw = PaymentMiddleware(app, routes=routes, pay_to=PAY_TO, network=NETWORK, facilitator=FakeFacilitator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://testserver")


def test_priced_needs_printable_ascii() -> None:
    assert Priced("$0.01", "GPT-5.5 API call (~17 input, 8192 max output tokens)").description.isascii()
    for bad in ("GPT-5.5 \u2014 call", "line\nbreak", "x" * 301):
        with pytest.raises(ValueError, match="ASCII"):
            Priced("$0.01", bad)


def test_route_description_must_be_ascii() -> None:
    with pytest.raises(ConfigurationError, match="ASCII"):
        PaymentMiddleware(
            _app,
            routes={"GET /a": RouteConfig(price="$0.01", description="caf\u00e9 \u2014 call")},
            pay_to=PAY_TO,
            network=NETWORK,
            facilitator=FakeFacilitator(),
        )


@pytest.mark.anyio
@pytest.mark.parametrize("policy", [_by_n, _by_n_async], ids=["sync", "async"])
async def test_the_402_describes_each_request_and_the_paid_retry_is_served(policy: Any) -> None:
    routes = {"GET /forecast": RouteConfig(price=policy, description="Weather forecast")}
    async with _asgi(routes) as c:
        r = await c.get("/forecast", params={"n": "3"})
        assert r.status_code == 402
        challenge = decode(r.headers["payment-required"])
        assert challenge["resource"]["description"] == "3 forecast(s)"
        assert challenge["accepts"][0]["amount"] == "3000"
        assert r.json()["accepts"][0]["description"] == "3 forecast(s)"  # the v1 body says the same
        paid = await c.get("/forecast", params={"n": "3"}, headers={"PAYMENT-SIGNATURE": pay_v2(challenge)})
        assert paid.status_code == 200 and paid.text == "ok"


@pytest.mark.anyio
async def test_a_route_description_stays_when_the_policy_returns_a_bare_price() -> None:
    routes = {"GET /a": RouteConfig(price=lambda r: TokenAmount(5), description="Route text")}
    async with _asgi(routes) as c:
        assert decode((await c.get("/a")).headers["payment-required"])["resource"]["description"] == "Route text"


@pytest.mark.anyio
async def test_payment_options_keep_the_inner_description() -> None:
    routes = {"GET /forecast": PaymentOptions(_by_n, [PaymentOption("eip155:8453"), PaymentOption(NETWORK)])}
    async with _asgi(routes) as c:
        challenge = decode((await c.get("/forecast", params={"n": "2"})).headers["payment-required"])
    assert challenge["resource"]["description"] == "2 forecast(s)"
    assert [(a["network"], a["amount"]) for a in challenge["accepts"]] == [("eip155:8453", "2000"), (NETWORK, "2000")]


@pytest.mark.anyio
async def test_a_non_ascii_policy_description_is_a_pricing_bug_never_served() -> None:
    routes = {"GET /a": RouteConfig(price=lambda r: Priced(TokenAmount(5), "caf\u00e9"))}
    async with _asgi(routes) as c:
        r = await c.get("/a")
    assert r.status_code == 500 and r.json()["error"] == "pricing_error"


def test_wsgi_uses_the_policy_description() -> None:
    mw = PaymentWSGIMiddleware(
        _wsgi_app,
        routes={"GET /forecast": RouteConfig(price=_by_n)},
        pay_to=PAY_TO,
        network=NETWORK,
        facilitator=SyncFakeFacilitator(),
    )
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://testserver") as c:
        r = c.get("/forecast", params={"n": "4"})
    assert decode(r.headers["payment-required"])["resource"]["description"] == "4 forecast(s)"


@pytest.mark.anyio
async def test_an_outer_layers_parsed_body_is_priced_without_reading_the_body_again() -> None:
    seen: list[Any] = []
    received: list[bytes] = []

    def policy(request: PaymentRequest) -> Any:
        seen.append(request.body)
        return TokenAmount(request.body["units"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        received.append(message.get("body", b""))
        await _app(scope, receive, send)

    inner = PaymentMiddleware(
        app,
        routes={"POST /a": RouteConfig(price=policy, price_body=True)},
        pay_to=PAY_TO,
        network=NETWORK,
        facilitator=FakeFacilitator(),
    )

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        scope[PRICING_BODY] = {"units": 42}  # e.g. a validated, quoted request object the handler shares
        await inner(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://testserver") as c:
        r = await c.post("/a", content=b"raw bytes, not JSON")
        assert decode(r.headers["payment-required"])["accepts"][0]["amount"] == "42"
        paid = await c.post(
            "/a",
            content=b"raw bytes, not JSON",
            headers={"PAYMENT-SIGNATURE": pay_v2(decode(r.headers["payment-required"]))},
        )
    assert paid.status_code == 200
    assert seen == [{"units": 42}, {"units": 42}]
    assert received == [b"raw bytes, not JSON"]  # the app still gets the untouched body
