"""The Django middleware in sync (test Client) and async (AsyncClient) mode, configured with override_settings."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client, override_settings

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAYER, decode, encode, pay_v1, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from tests.django import settings as test_settings
from tests.django import urls
from x402_middleware import RouteConfig, SettleResult, TokenAmount
from x402_middleware.pricing import LLMQuote
from x402_middleware.stores import InMemoryStore

NETWORK = "eip155:84532"


class NoLoopSyncFacilitator(SyncFakeFacilitator):
    """Fails the test if a blocking settlement ever runs inside an event loop (R10)."""

    def settle(self, payload: Any, requirements: Any) -> SettleResult:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return super().settle(payload, requirements)
        raise AssertionError("the sync facilitator was called inside an event loop")


def x402(**overrides: Any) -> dict[str, Any]:
    return {
        **test_settings.X402,
        "FACILITATOR": FakeFacilitator(),
        "SYNC_FACILITATOR": NoLoopSyncFacilitator(),
        **overrides,
    }


@dataclass
class Caller:
    """One Django test client, sync or async, with the facilitator double its mode uses."""

    mode: str
    client: Any
    facilitator: Any
    other: Any  # the double of the other mode: must stay untouched

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        call = getattr(self.client, method)
        return async_to_sync(call)(path, **kwargs) if self.mode == "async" else call(path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("get", path, **kwargs)

    def challenge(self, path: str = "/paid") -> dict[str, Any]:
        r = self.get(path)
        assert r.status_code == 402, r.content
        return decode(r["PAYMENT-REQUIRED"])  # type: ignore[no-any-return]


def configured(mode: str, **overrides: Any) -> tuple[Caller, Any]:
    """A client of ``mode`` and the override_settings that configures its middleware."""
    conf = x402(**overrides)
    fac, other = conf["FACILITATOR"], conf["SYNC_FACILITATOR"]
    if mode == "sync":
        fac, other = other, fac
    client = (AsyncClient if mode == "async" else Client)(raise_request_exception=False)
    return Caller(mode, client, fac, other), override_settings(X402=conf)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def caller(mode: str) -> Iterator[Caller]:
    urls.SEEN.clear()
    urls.EVENTS.clear()
    c, override = configured(mode)
    with override:
        yield c
    assert c.other.settled == []  # a mode never uses the other mode's facilitator


def test_free_route_passes_through(caller: Caller) -> None:
    r = caller.get("/free")
    assert r.status_code == 200 and r.json() == {"free": True} and not r.has_header("PAYMENT-RESPONSE")


def test_unpaid_request_gets_the_402_challenge(caller: Caller) -> None:
    r = caller.get("/paid?x=1")
    assert r.status_code == 402 and r["Content-Type"] == "application/json" and urls.SEEN == []
    challenge = decode(r["PAYMENT-REQUIRED"])
    assert challenge["x402Version"] == 2 and challenge["resource"]["url"] == "http://testserver/paid?x=1"
    assert challenge["accepts"][0]["amount"] == "1000" and challenge["accepts"][0]["network"] == NETWORK
    assert json.loads(r.content)["accepts"][0]["maxAmountRequired"] == "1000"


def test_paid_v2_is_served_settled_once_with_the_payment_on_the_request(caller: Caller) -> None:
    r = caller.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(caller.challenge())})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r["Cache-Control"] == "private"
    settle = decode(r["PAYMENT-RESPONSE"])
    assert settle["success"] is True and settle["payer"] == PAYER and settle["network"] == NETWORK
    assert len(caller.facilitator.settled) == 1
    assert urls.SEEN[-1].payer == PAYER and urls.SEEN[-1].amount == 1000


def test_paid_v1_gets_x_payment_response(caller: Caller) -> None:
    body = json.loads(caller.get("/paid").content)
    r = caller.get("/paid", headers={"X-PAYMENT": pay_v1(body)})
    assert r.status_code == 200 and decode(r["X-PAYMENT-RESPONSE"])["network"] == "base-sepolia"


def test_replayed_payment_is_refused(caller: Caller) -> None:
    sig = pay_v2(caller.challenge())
    assert caller.get("/paid", headers={"PAYMENT-SIGNATURE": sig}).status_code == 200
    r = caller.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and r.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert len(caller.facilitator.settled) == 1


@pytest.mark.parametrize("code", [301, 404, 500])
def test_non_2xx_is_not_settled_and_may_be_retried(caller: Caller, code: int) -> None:
    sig = pay_v2(caller.challenge(f"/status/{code}"))
    r = caller.get(f"/status/{code}", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == code and not r.has_header("PAYMENT-RESPONSE")
    assert caller.get(f"/status/{code}", headers={"PAYMENT-SIGNATURE": sig}).status_code == code
    assert caller.facilitator.settled == []


def test_view_exception_is_a_500_and_not_settled(caller: Caller) -> None:
    r = caller.get("/boom", headers={"PAYMENT-SIGNATURE": pay_v2(caller.challenge("/boom"))})
    assert r.status_code == 500 and caller.facilitator.settled == [] and urls.SEEN[-1] is not None


def test_paid_head_runs_no_view_and_leaves_the_payment_usable(caller: Caller) -> None:
    sig = pay_v2(caller.challenge())
    r = caller.request("head", "/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and urls.SEEN == [] and caller.facilitator.settled == []
    assert caller.get("/paid", headers={"PAYMENT-SIGNATURE": sig}).status_code == 200
    assert len(urls.SEEN) == 1 and len(caller.facilitator.settled) == 1


def test_malformed_header_is_4xx_json(caller: Caller) -> None:
    for header in ("not base64 !!!", encode({"x402Version": 3}), "A" * 50_000):
        r = caller.get("/paid", headers={"PAYMENT-SIGNATURE": header})
        assert r.status_code in (400, 402) and r.json()["error"] and urls.SEEN == []


def test_price_mismatch_gets_a_clear_reason(caller: Caller) -> None:
    ch = caller.challenge()
    ch["accepts"][0]["amount"] = "1"
    r = caller.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status_code == 402 and r.json()["error"] == "No matching payment requirements"
    assert "price" in r.json()["message"]


def test_streaming_response_is_settled_before_its_first_chunk_and_not_buffered(mode: str) -> None:
    urls.EVENTS.clear()
    c, override = configured(mode)
    c.facilitator.events = urls.EVENTS if mode == "sync" else None
    path = "/astream" if mode == "async" else "/stream"
    with override:
        r = c.get(path, headers={"PAYMENT-SIGNATURE": pay_v2(c.challenge(path))})
        assert r.status_code == 200 and r.streaming and decode(r["PAYMENT-RESPONSE"])["success"] is True
        # Settled, returned, and not one chunk produced yet: the stream flows only when the server reads it.
        assert len(c.facilitator.settled) == 1 and not any(isinstance(e, tuple) for e in urls.EVENTS)
        if mode == "async":

            async def consume() -> bytes:
                return b"".join([chunk async for chunk in r.streaming_content])

            body = async_to_sync(consume)()
        else:
            body = b"".join(r.streaming_content)
            r.close()
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    if mode == "sync":
        assert urls.EVENTS[0] == "settle" and urls.EVENTS[-1] == "view-closed"


def test_failed_settlement_replaces_a_stream_without_reading_it(mode: str) -> None:
    urls.EVENTS.clear()
    failure = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_insufficient_balance", "no funds")
    c, override = configured(mode)
    c.facilitator.settle_result = failure
    path = "/astream" if mode == "async" else "/stream"
    with override:
        r = c.get(path, headers={"PAYMENT-SIGNATURE": pay_v2(c.challenge(path))})
    assert r.status_code == 402 and not r.streaming and b"data:" not in r.content
    assert r.json()["error"] == "invalid_exact_evm_insufficient_balance"
    assert decode(r["PAYMENT-RESPONSE"])["success"] is False
    assert not any(isinstance(e, tuple) for e in urls.EVENTS)


def test_lost_settle_answer_is_503_and_the_retry_is_served_once(mode: str) -> None:
    c, override = configured(mode)
    c.facilitator.raise_on_settle = True
    with override:
        sig = pay_v2(c.challenge())
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        c.facilitator.raise_on_settle = False
        again = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        third = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 503 and r.json()["error"] == "settlement_unknown" and b"ok" not in r.content
    assert r["Retry-After"] == "5"
    assert again.status_code == 200 and third.status_code == 402 and len(c.facilitator.settled) == 1


def test_sync_concurrent_requests_with_one_payment_serve_exactly_one() -> None:
    urls.SEEN.clear()
    store = InMemoryStore()  # shared by every client's middleware instance, like one process's store
    fac = NoLoopSyncFacilitator(settle_delay=0.05)
    with override_settings(X402=x402(SYNC_FACILITATOR=fac, STORE=store)):
        sig = pay_v2(decode(Client().get("/paid")["PAYMENT-REQUIRED"]))
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: Client().get("/paid", headers={"PAYMENT-SIGNATURE": sig}), range(8)))
    assert sorted(r.status_code for r in results) == [200] + [402] * 7 and len(fac.settled) == 1
    assert len(urls.SEEN) == 1


@pytest.mark.anyio
async def test_async_concurrent_requests_with_one_payment_serve_exactly_one() -> None:
    fac = FakeFacilitator(settle_delay=0.05)
    with override_settings(X402=x402(FACILITATOR=fac)):
        client = AsyncClient()
        sig = pay_v2(decode((await client.get("/paid"))["PAYMENT-REQUIRED"]))
        results = await asyncio.gather(*[client.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(8)])
    assert sorted(r.status_code for r in results) == [200] + [402] * 7 and len(fac.settled) == 1


def test_body_priced_route_prices_from_json_and_the_view_still_reads_the_body(mode: str) -> None:
    quote = LLMQuote.from_rates({"m": ("3", "15")})
    c, override = configured(mode, ROUTES={"POST /llm": RouteConfig(price=quote, price_body=True)})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000})
    with override:
        r = c.request("post", "/llm", data=body, content_type="application/json")
        ch = decode(r["PAYMENT-REQUIRED"])
        assert ch["accepts"][0]["amount"] == str(
            quote.models["m"].atomic(quote.models["m"].estimate_tokens(json.loads(body)), 10_000)
        )
        paid = c.request(
            "post", "/llm", data=body, content_type="application/json", headers={"PAYMENT-SIGNATURE": pay_v2(ch)}
        )
        assert paid.status_code == 200 and paid.json() == {"got": body, "paid": True}
        # The same payment for a bigger request does not match its new price.
        bigger = body.replace("10000", "20000")
        sig = pay_v2(decode(c.request("post", "/llm", data=body, content_type="application/json")["PAYMENT-REQUIRED"]))
        r = c.request("post", "/llm", data=bigger, content_type="application/json", headers={"PAYMENT-SIGNATURE": sig})
        assert r.status_code == 402 and r.json()["error"] == "No matching payment requirements"
        unknown = c.request(
            "post", "/llm", data=json.dumps({"model": "nope", "messages": []}), content_type="application/json"
        )
        assert unknown.status_code == 400 and unknown.json()["error"] == "unknown_model"
    assert len(c.facilitator.settled) == 1


def test_price_function_bug_is_500_and_logged(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Any) -> Any:
        raise ZeroDivisionError("internal detail")

    urls.SEEN.clear()
    c, override = configured(mode, ROUTES={"GET /paid": broken})
    with override, caplog.at_level(logging.ERROR, logger="x402_middleware"):
        r = c.get("/paid")
    assert r.status_code == 500 and r.json()["error"] == "pricing_error" and urls.SEEN == []
    assert "internal detail" not in r.content.decode() and any(rec.exc_info for rec in caplog.records)


def test_async_price_function_runs_in_async_mode_and_is_refused_at_start_in_sync_mode(mode: str) -> None:
    async def price(request: Any) -> Any:
        return TokenAmount(1234)

    c, override = configured(mode, ROUTES={"GET /paid": price})
    with override:
        if mode == "async":
            r = c.get("/paid")
            assert r.status_code == 402 and decode(r["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "1234"
        else:  # found when the middleware is built, as in every shell, not on the first request
            with pytest.raises(ImproperlyConfigured, match="async price function"):
                c.get("/paid")


def test_a_mode_without_its_facilitator_is_improperly_configured() -> None:
    no_sync = override_settings(X402={**test_settings.X402, "SYNC_FACILITATOR": None})
    with no_sync, pytest.raises(ImproperlyConfigured, match="SYNC_FACILITATOR"):
        Client().get("/free")
    no_async = override_settings(X402={**test_settings.X402, "FACILITATOR": None})
    with no_async, pytest.raises(ImproperlyConfigured, match="'FACILITATOR'"):
        async_to_sync(AsyncClient().get)("/free")
