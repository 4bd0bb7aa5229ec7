"""PaymentMiddleware driven through httpx.ASGITransport around small raw ASGI apps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import OTHER_KEY, PAY_TO, PAYER, decode, encode, pay_v1, pay_v2
from x402_middleware import PaymentMiddleware, RouteConfig, SettleResult, TokenAmount

pytestmark = pytest.mark.anyio
NETWORK = "eip155:84532"


def make_app(
    status: int = 200,
    chunks: tuple[bytes, ...] = (b'{"ok":true}',),
    raise_exc: bool = False,
    seen: list[Any] | None = None,
) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append(scope.get("x402.payment"))
        if raise_exc:
            raise RuntimeError("app failed")
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def protect(app: Any, facilitator: FakeFacilitator | None = None, **kwargs: Any) -> PaymentMiddleware:
    routes = kwargs.pop("routes", {"GET /paid": "$0.001", "POST /paid": "$0.001"})
    return PaymentMiddleware(
        app, routes=routes, pay_to=PAY_TO, network=NETWORK, facilitator=facilitator or FakeFacilitator(), **kwargs
    )


async def challenge_of(c: httpx.AsyncClient, path: str = "/paid") -> dict[str, Any]:
    r = await c.get(path)
    assert r.status_code == 402
    return decode(r.headers["payment-required"])  # type: ignore[no-any-return]


async def test_free_route_passes_through_untouched() -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(), fac)) as c:
        r = await c.get("/free")
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert "payment-response" not in r.headers and fac.settled == []


async def test_unpaid_request_gets_v2_header_and_v1_body() -> None:
    async with client(protect(make_app())) as c:
        r = await c.get("/paid?x=1")
    assert r.status_code == 402
    assert r.headers["cache-control"] == "no-store"
    v2 = decode(r.headers["payment-required"])
    assert v2["x402Version"] == 2 and v2["error"] == "Payment required"
    assert v2["resource"] == {"url": "http://testserver/paid?x=1", "description": "", "mimeType": "application/json"}
    assert v2["accepts"] == [
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
    assert body["accepts"][0]["network"] == "base-sepolia"
    assert body["accepts"][0]["resource"] == "http://testserver/paid?x=1"
    assert body["accepts"][0]["description"] == "" and body["accepts"][0]["mimeType"] == "application/json"


async def test_unpaid_head_gets_the_same_402_headers() -> None:
    async with client(protect(make_app())) as c:
        r = await c.head("/paid")
    assert r.status_code == 402 and "payment-required" in r.headers


async def test_paid_v2_request_is_served_settled_and_exposes_payment() -> None:
    fac = FakeFacilitator()
    seen: list[Any] = []
    async with client(protect(make_app(seen=seen), fac)) as c:
        ch = await challenge_of(c)
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r.headers["cache-control"] == "private"
    settle = decode(r.headers["payment-response"])
    assert settle["success"] is True and settle["network"] == NETWORK and settle["payer"] == PAYER
    assert len(fac.settled) == 1 and fac.verified == []  # verified locally, settled once
    payment = seen[-1]
    assert payment.payer == PAYER and payment.amount == 1000 and payment.x402_version == 2


async def test_paid_v1_request_is_answered_with_x_payment_response() -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(), fac)) as c:
        body = (await c.get("/paid")).json()
        r = await c.get("/paid", headers={"X-PAYMENT": pay_v1(body)})
    assert r.status_code == 200
    settle = decode(r.headers["x-payment-response"])
    assert settle["success"] is True and settle["network"] == "base-sepolia"
    assert "payment-response" not in r.headers and len(fac.settled) == 1


async def test_replayed_payment_is_refused() -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        assert (await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})).status_code == 200
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402
    assert decode(r.headers["payment-required"])["error"] == "invalid_exact_evm_nonce_already_used"
    assert len(fac.settled) == 1


@pytest.mark.parametrize("status", [301, 400, 404, 500, 503])
async def test_non_2xx_is_never_settled_and_payment_can_be_retried(status: int) -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(status=status), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        assert r.status_code == status and "payment-response" not in r.headers
        again = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert again.status_code == status  # released: the same signature may be resent
    assert fac.settled == []


async def test_app_exception_is_not_settled_and_propagates() -> None:
    fac = FakeFacilitator()
    mw = protect(make_app(raise_exc=True), fac)
    transport = httpx.ASGITransport(app=mw, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        sig = pay_v2(await challenge_of(c))
        with pytest.raises(RuntimeError):
            await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert fac.settled == []


async def test_paid_head_runs_no_handler_and_leaves_the_payment_usable() -> None:
    fac = FakeFacilitator()
    seen: list[Any] = []
    async with client(protect(make_app(seen=seen), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        head = await c.head("/paid", headers={"PAYMENT-SIGNATURE": sig})
        assert head.status_code == 402 and head.content == b"" and "payment-required" in head.headers
        assert seen == [] and fac.settled == []
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 200 and len(seen) == 1 and len(fac.settled) == 1


async def test_settle_failure_replaces_response_and_drops_body() -> None:
    failure = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_insufficient_balance", "no funds")
    fac = FakeFacilitator(settle_result=failure)
    async with client(protect(make_app(chunks=(b"SECRET", b"CONTENT")), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and b"SECRET" not in r.content
    settle = decode(r.headers["payment-response"])
    assert settle == {
        "success": False,
        "transaction": "",
        "network": NETWORK,
        "payer": PAYER,
        "errorReason": "invalid_exact_evm_insufficient_balance",
        "errorMessage": "no funds",
    }
    assert r.json()["error"] == "invalid_exact_evm_insufficient_balance"


async def test_lost_settle_answer_gives_503_retry_and_the_retry_is_served_once() -> None:
    fac = FakeFacilitator(raise_on_settle=True)
    seen: list[Any] = []
    async with client(protect(make_app(chunks=(b"SECRET",), seen=seen), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        assert r.status_code == 503 and b"SECRET" not in r.content and r.headers["retry-after"] == "5"
        assert r.json()["error"] == "settlement_unknown" and "Do not sign a new payment" in r.json()["message"]
        fac.raise_on_settle = False  # the facilitator answers again
        again = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        third = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert again.status_code == 200 and again.content == b"SECRET" and "payment-response" in again.headers
    assert third.status_code == 402 and third.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert len(fac.settled) == 1 and len(seen) == 2


async def test_settlement_pending_gives_503_and_the_retry_is_served_once_confirmed() -> None:
    pending = SettleResult(False, NETWORK, "0xabc", PAYER, "settlement_pending")
    fac = FakeFacilitator(settle_result=pending)
    async with client(protect(make_app(chunks=(b"SECRET",)), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        still = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        fac.settle_result = SettleResult(True, NETWORK, "0xabc", PAYER)
        done = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        third = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    for answer in (r, still):
        assert (
            answer.status_code == 503 and b"SECRET" not in answer.content and "payment-required" not in answer.headers
        )
        assert answer.json()["error"] == "settlement_pending" and answer.json()["transaction"] == "0xabc"
    assert done.status_code == 200 and decode(done.headers["payment-response"])["transaction"] == "0xabc"
    assert third.status_code == 402 and len(fac.settled) == 3  # one settle per request, never two in one


async def test_follow_up_that_finds_the_nonce_used_serves_the_paid_request() -> None:
    fac = FakeFacilitator(settle_result=SettleResult(False, NETWORK, "0xabc", PAYER, "settlement_pending"))
    async with client(protect(make_app(chunks=(b"SECRET",)), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        assert (await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})).status_code == 503
        # A facilitator that does not remember its transaction reports the nonce as used once it is mined.
        used = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_nonce_already_used")
        fac.settle_result = used
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 200 and r.content == b"SECRET"
    assert decode(r.headers["payment-response"])["transaction"] == "0xabc"


async def test_a_refused_payment_is_burned_and_never_runs_the_app_again() -> None:
    refused = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_insufficient_balance", "no funds")
    fac = FakeFacilitator(settle_result=refused)
    seen: list[Any] = []
    async with client(protect(make_app(chunks=(b"SECRET",), seen=seen), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        answers = [await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(5)]
    assert [a.status_code for a in answers] == [402] * 5 and all(b"SECRET" not in a.content for a in answers)
    assert {a.json()["error"] for a in answers} == {"invalid_exact_evm_insufficient_balance"}
    assert len(seen) == 1 and len(fac.settled) == 1


async def test_check_funds_refuses_an_unfunded_payment_before_the_app_runs() -> None:
    fac = FakeFacilitator(verify_valid=False)
    seen: list[Any] = []
    async with client(protect(make_app(seen=seen), fac, check_funds=True)) as c:
        sig = pay_v2(await challenge_of(c))
        answers = [await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(3)]
    assert [a.status_code for a in answers] == [402] * 3
    assert {a.json()["error"] for a in answers} == {"invalid_exact_evm_payload_signature"}
    assert seen == [] and fac.settled == [] and len(fac.verified) == 1  # burned: asked once


async def test_check_funds_remembers_a_funded_payer_briefly() -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(), fac, check_funds=True)) as c:
        challenge = await challenge_of(c)
        for _ in range(3):
            assert (await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(challenge)})).status_code == 200
    assert len(fac.verified) == 1 and len(fac.settled) == 3


async def test_route_check_funds_overrides_the_middleware_default() -> None:
    fac = FakeFacilitator(verify_valid=False)
    routes = {"GET /paid": RouteConfig(price="$0.001", check_funds=False)}
    async with client(protect(make_app(), fac, routes=routes, check_funds=True)) as c:
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(await challenge_of(c))})
    assert r.status_code == 200 and fac.verified == []


async def test_concurrent_requests_with_one_payment_serve_exactly_one() -> None:
    fac = FakeFacilitator(settle_delay=0.05)
    async with client(protect(make_app(), fac)) as c:
        sig = pay_v2(await challenge_of(c))
        results = await asyncio.gather(*[c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(8)])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [402] * 7 and len(fac.settled) == 1
    errors = {decode(r.headers["payment-required"])["error"] for r in results if r.status_code == 402}
    assert errors <= {"payment_in_progress", "invalid_exact_evm_nonce_already_used"}


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"value": 999}, "invalid_exact_evm_payload_authorization_value_mismatch"),
        ({"to": "0x000000000000000000000000000000000000dEaD"}, "invalid_exact_evm_payload_recipient_mismatch"),
        ({"valid_before": 1}, "invalid_exact_evm_payload_authorization_valid_before"),
        ({"valid_after": 4_000_000_000}, "invalid_exact_evm_payload_authorization_valid_after"),
        ({"name": "USD Coin"}, "invalid_exact_evm_payload_signature"),
        ({"chain_id": 8453}, "invalid_exact_evm_payload_signature"),
    ],
)
async def test_invalid_payments_are_refused_with_reason(override: dict[str, Any], reason: str) -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(chunks=(b"SECRET",)), fac)) as c:
        sig = pay_v2(await challenge_of(c), **override)
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    assert r.status_code == 402 and b"SECRET" not in r.content
    assert decode(r.headers["payment-required"])["error"] == reason and r.json()["error"] == reason
    assert fac.settled == []


async def test_signature_by_someone_else_is_refused() -> None:
    async with client(protect(make_app(chunks=(b"SECRET",)))) as c:
        ch = await challenge_of(c)
        payload = decode(pay_v2(ch))
        forged = decode(pay_v2(ch, key=OTHER_KEY))
        payload["payload"]["signature"] = forged["payload"]["signature"]
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": encode(payload)})
    assert r.status_code == 402 and r.json()["error"] == "invalid_exact_evm_payload_signature"


async def test_payment_for_another_price_does_not_match() -> None:
    async with client(protect(make_app())) as c:
        ch = await challenge_of(c)
        ch["accepts"][0]["amount"] = "1"
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status_code == 402 and r.json()["error"] == "No matching payment requirements"


@pytest.mark.parametrize(
    "header",
    [
        "not base64 !!!",
        "",
        "eyJ4NDAyVmVyc2lvbiI6",
        encode([1, 2]),
        encode({"x402Version": 3}),
        encode(
            {"x402Version": 2, "accepted": {"scheme": "exact", "network": NETWORK}, "payload": {"signature": "0x12"}}
        ),
        encode({"x402Version": 2, "accepted": {}, "payload": {}}),
        "A" * 100_000,
        encode({"x402Version": 1.0}),
        encode({"x402Version": True}),
    ],
)
async def test_malformed_headers_get_400_json_never_500(header: str) -> None:
    fac = FakeFacilitator()
    async with client(protect(make_app(chunks=(b"SECRET",)), fac)) as c:
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": header})
    assert r.status_code in (400, 402) and b"SECRET" not in r.content
    body = r.json()
    assert body["error"] and (body.get("message") or r.status_code == 402)
    assert fac.settled == []


async def test_dynamic_price_callable_sync_and_async_and_free() -> None:
    calls: list[str] = []

    def sync_price(req: Any) -> Any:
        calls.append(req.path_params["id"])
        return None if req.path_params["id"] == "free" else TokenAmount(2500)

    async def async_price(req: Any) -> Any:
        return "$0.01" if req.query.get("big") else "$0.002"

    routes = {"GET /items/{id}": sync_price, "GET /a": async_price}
    fac = FakeFacilitator()
    async with client(protect(make_app(), fac, routes=routes)) as c:
        assert (await c.get("/items/free")).status_code == 200
        ch = await challenge_of(c, "/items/7")
        assert ch["accepts"][0]["amount"] == "2500"
        r = await c.get("/items/7", headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
        assert r.status_code == 200
        assert (await challenge_of(c, "/a?big=1"))["accepts"][0]["amount"] == "10000"
        assert (await challenge_of(c, "/a"))["accepts"][0]["amount"] == "2000"
    assert calls == ["free", "7", "7"]


async def test_price_function_bug_is_500_and_never_serves() -> None:
    def broken(req: Any) -> Any:
        raise KeyError("oops")

    async with client(protect(make_app(chunks=(b"SECRET",)), routes={"GET /paid": broken})) as c:
        r = await c.get("/paid")
    assert r.status_code == 500 and r.json()["error"] == "pricing_error" and b"SECRET" not in r.content


async def test_body_priced_route_still_gives_the_app_its_body() -> None:
    got: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        got.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def price(req: Any) -> Any:
        return TokenAmount(1000 * int(req.body["n"]))

    routes = {"POST /llm": RouteConfig(price=price, price_body=True)}
    payload = json.dumps({"n": 3}).encode()
    async with client(protect(app, routes=routes)) as c:
        r = await c.post("/llm", content=payload)
        ch = decode(r.headers["payment-required"])
        assert ch["accepts"][0]["amount"] == "3000"
        r = await c.post("/llm", content=payload, headers={"PAYMENT-SIGNATURE": pay_v2(ch)})
    assert r.status_code == 200 and got == [payload]


async def test_several_networks_are_offered() -> None:
    mw = PaymentMiddleware(
        make_app(),
        routes={"GET /paid": "$0.5"},
        pay_to=PAY_TO,
        network=["eip155:8453", "eip155:84532"],
        facilitator=FakeFacilitator(),
    )
    async with client(mw) as c:
        ch = await challenge_of(c)
        assert [a["network"] for a in ch["accepts"]] == ["eip155:8453", "eip155:84532"]
        assert ch["accepts"][0]["extra"]["name"] == "USD Coin" and ch["accepts"][0]["amount"] == "500000"
        r = await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(ch, index=1)})
    assert r.status_code == 200


async def test_the_v1_body_lists_only_legacy_named_networks_and_never_a_null_output_schema() -> None:
    routes = {"GET /paid": RouteConfig(price="$0.001", networks=["eip155:84532", "eip155:42161"])}
    async with client(protect(make_app(), routes=routes)) as c:
        r = await c.get("/paid")
    v2 = decode(r.headers["payment-required"])["accepts"]
    v1 = r.json()["accepts"]
    assert [a["network"] for a in v2] == ["eip155:84532", "eip155:42161"]  # v2 clients see every option
    assert [a["network"] for a in v1] == ["base-sepolia"]  # legacy clients reject a CAIP-2 name they do not know
    assert all("outputSchema" not in a for a in v1)  # x402-fetch 1.x's zod refuses null
