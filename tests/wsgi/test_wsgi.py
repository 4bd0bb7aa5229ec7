"""PaymentWSGIMiddleware around raw WSGI apps: httpx.WSGITransport, wsgiref's validator and a PEP 3333 harness."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.validate import validator

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import OTHER_KEY, PAYER, decode, encode, pay_v1, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from tests.wsgi._apps import NETWORK, PAY_TO, RecordingApp, protect, serve
from x402_middleware import ConfigurationError, RouteConfig, SettleResult, TokenAmount
from x402_middleware.pricing import PaymentOption, PaymentOptions
from x402_middleware.stores import InMemoryStore
from x402_middleware.wsgi import PaymentWSGIMiddleware


def client(app: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")


def challenge_of(c: httpx.Client, path: str = "/paid") -> dict[str, Any]:
    r = c.get(path)
    assert r.status_code == 402, r.text
    return decode(r.headers["payment-required"])  # type: ignore[no-any-return]


def test_free_route_passes_through_untouched() -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp()
    with client(protect(app, fac)) as c:
        r = c.get("/free")
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert "payment-response" not in r.headers and fac.settled == [] and app.payments == [None]


def test_unpaid_request_gets_v2_header_and_v1_body_and_app_never_runs() -> None:
    app = RecordingApp()
    with client(protect(app)) as c:
        r = c.get("/paid?x=1")
    assert r.status_code == 402 and app.payments == []
    assert r.headers["content-type"] == "application/json" and r.headers["cache-control"] == "no-store"
    challenge = decode(r.headers["payment-required"])
    assert challenge["x402Version"] == 2 and challenge["error"] == "Payment required"
    assert challenge["resource"]["url"] == "http://testserver/paid?x=1"
    assert challenge["accepts"] == [
        {
            "scheme": "exact",
            "network": NETWORK,
            "amount": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": PAY_TO,
            "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2"},
        }
    ]
    body = r.json()
    assert body["x402Version"] == 1 and body["accepts"][0]["maxAmountRequired"] == "1000"
    assert body["accepts"][0]["network"] == "base-sepolia" and body["error"] == "X-PAYMENT header is required"


def test_unpaid_head_gets_402_headers() -> None:
    with client(protect(RecordingApp())) as c:
        r = c.head("/paid")
    assert r.status_code == 402 and "payment-required" in r.headers


def test_paid_v2_request_is_served_settled_and_exposes_payment() -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp()
    with client(protect(app, fac)) as c:
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(challenge_of(c))})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r.headers["cache-control"] == "private"
    settle = decode(r.headers["payment-response"])
    assert settle["success"] is True and settle["network"] == NETWORK and settle["payer"] == PAYER
    assert "PAYMENT-RESPONSE" in r.headers["access-control-expose-headers"]
    assert len(fac.settled) == 1 and fac.verified == []
    payment = app.payments[-1]
    assert payment.payer == PAYER and payment.amount == 1000 and payment.x402_version == 2


def test_paid_v1_request_is_answered_with_x_payment_response() -> None:
    fac = SyncFakeFacilitator()
    with client(protect(RecordingApp(), fac)) as c:
        r = c.get("/paid", headers={"X-PAYMENT": pay_v1(c.get("/paid").json())})
    assert r.status_code == 200 and "payment-response" not in r.headers
    settle = decode(r.headers["x-payment-response"])
    assert settle["success"] is True and settle["network"] == "base-sepolia" and len(fac.settled) == 1


def test_replayed_payment_is_refused() -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp()
    with client(protect(app, fac)) as c:
        sig = pay_v2(challenge_of(c))
        assert c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}).status_code == 200
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and r.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert len(fac.settled) == 1 and len(app.payments) == 1


@pytest.mark.parametrize(
    "status",
    [
        "301 Moved Permanently",
        "400 Bad Request",
        "404 Not Found",
        "500 Internal Server Error",
        "503 Service Unavailable",
    ],
)
def test_non_2xx_is_never_settled_and_payment_can_be_retried(status: str) -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp(status=status, chunks=(b"nope",))
    with client(protect(app, fac)) as c:
        sig = pay_v2(challenge_of(c))
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        assert r.status_code == int(status[:3]) and r.content == b"nope" and "payment-response" not in r.headers
        again = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert again.status_code == int(status[:3])  # released: the same signature may be resent
    assert fac.settled == [] and app.closed == 2


@pytest.mark.parametrize("raise_at", ["call", "iter"])
def test_app_exception_is_not_settled_propagates_and_releases(raise_at: str) -> None:
    fac, store = SyncFakeFacilitator(), InMemoryStore()
    app = RecordingApp(raise_at=raise_at, lazy_start=raise_at == "iter")
    mw = protect(app, fac, store=store)
    sig = pay_v2(decode(serve(mw).headers["payment-required"]))
    with pytest.raises(RuntimeError):
        serve(mw, headers={"PAYMENT-SIGNATURE": sig})
    assert fac.settled == []
    app.raise_at = None
    assert serve(mw, headers={"PAYMENT-SIGNATURE": sig}).status == 200  # the reservation was released
    assert len(fac.settled) == 1


def test_paid_head_runs_no_handler_and_leaves_the_payment_usable() -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp()
    with client(protect(app, fac)) as c:
        sig = pay_v2(challenge_of(c))
        r = c.head("/paid", headers={"PAYMENT-SIGNATURE": sig})
        assert r.status_code == 402 and r.content == b"" and app.payments == [] and fac.settled == []
        assert c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}).status_code == 200
    assert len(app.payments) == 1 and len(fac.settled) == 1


def test_settle_failure_replaces_response_drops_body_and_closes_app() -> None:
    failure = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_insufficient_balance", "no funds")
    fac, app = SyncFakeFacilitator(settle_result=failure), RecordingApp(chunks=(b"SECRET", b"CONTENT"))
    mw = protect(app, fac)
    sig = pay_v2(decode(serve(mw).headers["payment-required"]))
    r = serve(validator(mw), headers={"PAYMENT-SIGNATURE": sig})
    assert r.status == 402 and b"SECRET" not in r.body and app.closed == 1
    assert decode(r.headers["payment-response"]) == {
        "success": False,
        "transaction": "",
        "network": NETWORK,
        "payer": PAYER,
        "errorReason": "invalid_exact_evm_insufficient_balance",
        "errorMessage": "no funds",
    }
    assert json.loads(r.body)["error"] == "invalid_exact_evm_insufficient_balance"
    assert int(r.headers["content-length"]) == len(r.body)
    # The app produced its first chunk (that is what triggers settlement) but nothing more was pulled.
    assert ("app", b"CONTENT") not in app.events


def test_lost_settle_answer_gives_503_and_the_retry_is_served_once() -> None:
    fac, app = SyncFakeFacilitator(raise_on_settle=True), RecordingApp(chunks=(b"SECRET",))
    with client(protect(app, fac)) as c:
        sig = pay_v2(challenge_of(c))
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        fac.raise_on_settle = False
        again = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        third = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 503 and b"SECRET" not in r.content and r.json()["error"] == "settlement_unknown"
    assert r.headers["retry-after"] == "5"
    assert again.status_code == 200 and again.content == b"SECRET" and len(fac.settled) == 1
    assert third.status_code == 402 and third.json()["error"] == "invalid_exact_evm_nonce_already_used"


def test_settlement_pending_gives_503_then_the_confirmed_retry_is_served() -> None:
    fac = SyncFakeFacilitator(settle_result=SettleResult(False, NETWORK, "0xabc", PAYER, "settlement_pending"))
    with client(protect(RecordingApp(chunks=(b"SECRET",)), fac)) as c:
        sig = pay_v2(challenge_of(c))
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        fac.settle_result = SettleResult(True, NETWORK, "0xabc", PAYER)
        again = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 503 and b"SECRET" not in r.content and r.json()["transaction"] == "0xabc"
    assert again.status_code == 200 and again.content == b"SECRET" and len(fac.settled) == 2


def test_a_refused_payment_is_burned_and_never_runs_the_app_again() -> None:
    refused = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_insufficient_balance", "no funds")
    fac, app = SyncFakeFacilitator(settle_result=refused), RecordingApp(chunks=(b"SECRET",))
    with client(protect(app, fac)) as c:
        sig = pay_v2(challenge_of(c))
        answers = [c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(4)]
    assert {(a.status_code, a.json()["error"]) for a in answers} == {(402, "invalid_exact_evm_insufficient_balance")}
    assert len(app.payments) == 1 and len(fac.settled) == 1


def test_check_funds_refuses_an_unfunded_payment_before_the_app_runs() -> None:
    fac, app = SyncFakeFacilitator(verify_valid=False), RecordingApp()
    with client(protect(app, fac, check_funds=True)) as c:
        sig = pay_v2(challenge_of(c))
        answers = [c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(3)]
    assert [a.status_code for a in answers] == [402] * 3 and app.payments == [] and len(fac.verified) == 1


def test_concurrent_requests_with_one_payment_serve_exactly_one() -> None:
    fac, app = SyncFakeFacilitator(settle_delay=0.05), RecordingApp()
    with client(protect(app, fac)) as c:
        sig = pay_v2(challenge_of(c))
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}), range(8)))
    assert sorted(r.status_code for r in results) == [200] + [402] * 7
    assert len(fac.settled) == 1 and len(app.payments) == 1
    assert {r.json()["error"] for r in results if r.status_code == 402} <= {
        "payment_in_progress",
        "invalid_exact_evm_nonce_already_used",
    }


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"value": 999}, "invalid_exact_evm_payload_authorization_value_mismatch"),
        ({"to": "0x000000000000000000000000000000000000dEaD"}, "invalid_exact_evm_payload_recipient_mismatch"),
        ({"valid_before": 1}, "invalid_exact_evm_payload_authorization_valid_before"),
        ({"chain_id": 8453}, "invalid_exact_evm_payload_signature"),
    ],
)
def test_invalid_payments_are_refused_with_reason(override: dict[str, Any], reason: str) -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp(chunks=(b"SECRET",))
    with client(protect(app, fac)) as c:
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(challenge_of(c), **override)})
    assert r.status_code == 402 and b"SECRET" not in r.content and app.payments == []
    assert decode(r.headers["payment-required"])["error"] == reason and r.json()["error"] == reason
    assert fac.settled == []


def test_signature_by_someone_else_is_refused() -> None:
    with client(protect(RecordingApp(chunks=(b"SECRET",)))) as c:
        ch = challenge_of(c)
        payload = decode(pay_v2(ch))
        payload["payload"]["signature"] = decode(pay_v2(ch, key=OTHER_KEY))["payload"]["signature"]
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": encode(payload)})
    assert r.status_code == 402 and r.json()["error"] == "invalid_exact_evm_payload_signature"


def test_payment_for_another_price_gets_a_clear_reason() -> None:
    with client(protect(RecordingApp())) as c:
        ch = challenge_of(c)
        ch["accepts"][0]["amount"] = "1"
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status_code == 402 and r.json()["error"] == "No matching payment requirements"
    assert "request the route again without payment" in r.json()["message"]


@pytest.mark.parametrize(
    "header",
    [
        "not base64 !!!",
        "eyJ4NDAyVmVyc2lvbiI6",
        encode([1, 2]),
        encode({"x402Version": 3}),
        encode({"x402Version": 2, "accepted": {}, "payload": {}}),
        "A" * 100_000,
        encode({"x402Version": True}),
    ],
)
def test_malformed_headers_get_4xx_json_never_500(header: str) -> None:
    fac, app = SyncFakeFacilitator(), RecordingApp(chunks=(b"SECRET",))
    r = serve(validator(protect(app, fac)), headers={"PAYMENT-SIGNATURE": header})
    assert r.status in (400, 402) and b"SECRET" not in r.body and app.payments == []
    body = json.loads(r.body)
    assert body["error"] and (body.get("message") or r.status == 402) and fac.settled == []


def test_settles_before_the_first_byte_and_streams_lazily() -> None:
    events: list[Any] = []
    fac = SyncFakeFacilitator()
    fac.events = events
    app = RecordingApp(chunks=(b"one", b"two", b"three"), lazy_start=True, events=events)
    mw = protect(app, fac)
    sig = pay_v2(decode(serve(mw).headers["payment-required"]))
    events.clear()
    r = serve(validator(mw), headers={"PAYMENT-SIGNATURE": sig}, events=events)
    assert r.status == 200 and r.body == b"onetwothree"
    # Settlement happens after the app's first chunk and before the server sees anything; then each
    # chunk is handed to the server before the app produces the next one (nothing is buffered).
    assert events == [
        ("app", b"one"),
        "settle",
        ("start", "200 OK"),
        ("sent", b"one"),
        ("app", b"two"),
        ("sent", b"two"),
        ("app", b"three"),
        ("sent", b"three"),
        "app-closed",
    ]


def test_legacy_write_callable_is_settled_before_the_first_write() -> None:
    events: list[Any] = []
    fac = SyncFakeFacilitator()
    fac.events = events
    app = RecordingApp(chunks=(b"a", b"b"), use_write=True, events=events)
    mw = protect(app, fac)
    sig = pay_v2(decode(serve(mw).headers["payment-required"]))
    events.clear()
    r = serve(mw, headers={"PAYMENT-SIGNATURE": sig}, events=events)
    assert r.status == 200 and r.body == b"ab" and "payment-response" in r.headers
    assert events == [
        ("app", b"a"),
        "settle",
        ("start", "200 OK"),
        ("sent", b"a"),
        ("app", b"b"),
        ("sent", b"b"),
        "app-closed",
    ]


def test_legacy_write_with_failed_settlement_sends_only_the_402() -> None:
    fac = SyncFakeFacilitator(settle_result=SettleResult(False, NETWORK, "", PAYER, "insufficient_funds"))
    app = RecordingApp(chunks=(b"SECRET", b"MORE"), use_write=True)
    mw = protect(app, fac)
    sig = pay_v2(decode(serve(mw).headers["payment-required"]))
    r = serve(mw, headers={"PAYMENT-SIGNATURE": sig})
    assert r.status == 402 and b"SECRET" not in r.body and b"MORE" not in r.body and app.closed == 1


def test_empty_2xx_body_is_settled_at_the_end() -> None:
    fac = SyncFakeFacilitator()
    mw = protect(RecordingApp(status="204 No Content", chunks=(), headers=()), fac)
    sig = pay_v2(decode(serve(mw).headers["payment-required"]))
    r = serve(validator(mw), headers={"PAYMENT-SIGNATURE": sig})
    assert r.status == 204 and r.body == b"" and "payment-response" in r.headers and len(fac.settled) == 1


def test_existing_cache_control_gets_private() -> None:
    app = RecordingApp(headers=(("Content-Type", "application/json"), ("Cache-Control", "max-age=60")))
    with client(protect(app)) as c:
        r = c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(challenge_of(c))})
    assert r.headers["cache-control"] == "max-age=60, private"


def test_dynamic_price_from_path_and_query() -> None:
    calls: list[str] = []

    def price(req: Any) -> Any:
        calls.append(req.path_params["id"])
        if req.path_params["id"] == "free":
            return None
        return "$0.01" if req.query.get("big") == "1" else TokenAmount(2500)

    fac, app = SyncFakeFacilitator(), RecordingApp()
    with client(protect(app, fac, routes={"GET /items/{id}": price})) as c:
        assert c.get("/items/free").status_code == 200 and app.payments == [None]
        assert challenge_of(c, "/items/7?big=1")["accepts"][0]["amount"] == "10000"
        ch = challenge_of(c, "/items/7")
        assert ch["accepts"][0]["amount"] == "2500"
        assert c.get("/items/7", headers={"PAYMENT-SIGNATURE": pay_v2(ch)}).status_code == 200
    assert calls == ["free", "7", "7", "7"] and len(fac.settled) == 1


def test_price_function_bug_is_500_logged_and_never_served(caplog: pytest.LogCaptureFixture) -> None:
    def broken(req: Any) -> Any:
        raise KeyError("secret-internal-detail")

    app = RecordingApp(chunks=(b"SECRET",))
    with (
        caplog.at_level(logging.ERROR, logger="x402_middleware"),
        client(protect(app, routes={"GET /paid": broken})) as c,
    ):
        r = c.get("/paid")
    assert r.status_code == 500 and r.json()["error"] == "pricing_error" and app.payments == []
    assert "secret-internal-detail" not in r.text  # the details go to the log, not to the client
    assert any("secret-internal-detail" in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_price_returning_garbage_is_500() -> None:
    with client(protect(RecordingApp(), routes={"GET /paid": lambda req: 0.5})) as c:
        r = c.get("/paid")
    assert r.status_code == 500 and r.json()["error"] == "pricing_error"


def test_async_price_function_is_refused_at_start_up_and_at_run_time() -> None:
    async def price(req: Any) -> Any:
        return "$0.01"

    with pytest.raises(ConfigurationError, match="async price function"):
        protect(RecordingApp(), routes={"GET /paid": price})
    # Hidden behind a sync wrapper, it is caught per request: a 500, never served.
    hidden = PaymentOptions(price, [PaymentOption(NETWORK)])
    app = RecordingApp()
    with client(protect(app, routes={"GET /paid": hidden})) as c:
        r = c.get("/paid")
    assert r.status_code == 500 and app.payments == []


def test_async_facilitator_or_store_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="SyncHTTPFacilitator"):
        PaymentWSGIMiddleware(
            RecordingApp(),
            routes={"/paid": "$0.01"},
            pay_to=PAY_TO,
            network=NETWORK,
            facilitator=FakeFacilitator(),  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigurationError, match="SyncPaymentStore"):
        protect(RecordingApp(), store=object())


def test_body_priced_route_gives_the_app_its_whole_body() -> None:
    def price(req: Any) -> Any:
        return TokenAmount(1000 * int(req.body["n"]))

    app = RecordingApp()
    payload = json.dumps({"n": 3, "pad": "x" * 5000}).encode()
    mw = protect(app, routes={"POST /llm": RouteConfig(price=price, price_body=True)})
    with client(mw) as c:
        r = c.post("/llm", content=payload)
        ch = decode(r.headers["payment-required"])
        assert ch["accepts"][0]["amount"] == "3000"
        r = c.post("/llm", content=payload, headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status_code == 200 and app.bodies == [payload]


def test_body_without_content_length_on_a_terminated_stream_is_replayed() -> None:
    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen.append(stream.readline() + stream.read(3) + stream.read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    body = b'{"n": 2}\nline two\n'
    mw = protect(app, routes={"POST /llm": RouteConfig(price=lambda r: TokenAmount(1000), price_body=True)})
    ch = decode(serve(mw, "/llm", method="POST", body=body, content_length=False).headers["payment-required"])
    r = serve(mw, "/llm", method="POST", body=body, content_length=False, headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status == 200 and seen == [body]


def test_body_over_the_cap_is_refused_with_413_and_never_priced_or_served() -> None:
    bodies: list[Any] = []

    def price(req: Any) -> Any:
        bodies.append(req.body)
        return "$0.01"

    app = RecordingApp()
    payload = json.dumps({"n": "x" * 200}).encode()
    mw = protect(app, routes={"POST /llm": RouteConfig(price=price, price_body=True)}, max_pricing_body=100)
    with client(mw) as c:
        r = c.post("/llm", content=payload)
    assert r.status_code == 413 and r.json()["error"] == "request_body_too_large"
    assert bodies == [] and app.bodies == []


def test_several_networks_are_offered() -> None:
    mw = PaymentWSGIMiddleware(
        RecordingApp(),
        routes={"GET /paid": "$0.5"},
        pay_to=PAY_TO,
        network=["eip155:8453", NETWORK],
        facilitator=SyncFakeFacilitator(),
    )
    with client(mw) as c:
        ch = challenge_of(c)
        assert [a["network"] for a in ch["accepts"]] == ["eip155:8453", NETWORK]
        assert c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(ch, index=1)}).status_code == 200


def test_script_name_is_part_of_the_resource_url() -> None:
    transport = httpx.WSGITransport(app=protect(RecordingApp()), script_name="/api")
    with httpx.Client(transport=transport, base_url="http://testserver") as c:
        r = c.get("/paid")
    assert decode(r.headers["payment-required"])["resource"]["url"] == "http://testserver/api/paid"
