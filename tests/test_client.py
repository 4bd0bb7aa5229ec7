"""X402Auth against our PaymentMiddleware (httpx.ASGITransport, a real uvicorn) and httpx.MockTransport servers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, PAYER, PAYER_KEY, decode, encode
from tests._servers import uvicorn_server
from x402_middleware import (
    ConfigurationError,
    PaymentClientError,
    PaymentMiddleware,
    SettleResult,
    SpendLimitError,
    X402Auth,
    settlement_of,
)

pytestmark = pytest.mark.anyio
NETWORK = "eip155:84532"
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"paid:" + body})


class Recorder:
    """Records each request's headers; ``legacy`` drops the v2 header so only the v1 body is left (a v1 server)."""

    def __init__(self, app: Any, *, legacy: bool = False) -> None:
        self.app, self.legacy = app, legacy
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})

        async def send_v1_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message["headers"] if k != b"payment-required"]
            await send(message)

        await self.app(scope, receive, send_v1_only if self.legacy else send)


def protected(fac: FakeFacilitator | None = None, routes: dict[str, Any] | None = None, **kw: Any) -> PaymentMiddleware:
    return PaymentMiddleware(
        echo_app,
        routes=routes or {"GET /paid": "$0.001", "POST /paid": "$0.001"},
        pay_to=PAY_TO,
        network=NETWORK,
        facilitator=fac or FakeFacilitator(),
        **kw,
    )


def client(app: Any, auth: X402Auth) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", auth=auth)


async def test_pays_a_v2_challenge_once_and_exposes_the_settlement() -> None:
    fac = FakeFacilitator()
    rec = Recorder(protected(fac))
    auth = X402Auth(Account.from_key(PAYER_KEY))
    before = int(time.time())
    async with client(rec, auth) as c:
        r = await c.get("/paid?q=1")
    assert r.status_code == 200 and r.text == "paid:"
    assert [h.status_code for h in r.history] == [402] and len(rec.headers) == 2
    assert "payment-signature" not in rec.headers[0] and "x-payment" not in rec.headers[1]
    challenge = decode(r.history[0].headers["payment-required"])
    payload = decode(rec.headers[1]["payment-signature"])
    assert payload["x402Version"] == 2
    assert payload["accepted"] == challenge["accepts"][0]  # verbatim echo
    assert (
        payload["resource"]
        == challenge["resource"]
        == {"url": "http://testserver/paid?q=1", "description": "", "mimeType": "application/json"}
    )
    authz = payload["payload"]["authorization"]
    assert authz["from"] == PAYER and authz["to"] == PAY_TO and authz["value"] == "1000"
    assert before - 600 <= int(authz["validAfter"]) <= int(time.time()) - 600
    assert before + 300 <= int(authz["validBefore"]) <= int(time.time()) + 300
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.payer == PAYER
    assert settled.transaction == "0x" + fac.settled[0][0].data.authorization.nonce.hex()
    assert auth.spent == 1000


async def test_signature_recovers_with_eth_account() -> None:
    rec = Recorder(protected())
    async with client(rec, X402Auth(PAYER_KEY)) as c:
        assert (await c.get("/paid")).status_code == 200
    payload = decode(rec.headers[1]["payment-signature"])
    a = payload["payload"]["authorization"]
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": n, "type": t}
                for n, t in (
                    ("from", "address"),
                    ("to", "address"),
                    ("value", "uint256"),
                    ("validAfter", "uint256"),
                    ("validBefore", "uint256"),
                    ("nonce", "bytes32"),
                )
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": "USDC", "version": "2", "chainId": 84532, "verifyingContract": USDC},
        "message": {
            "from": a["from"],
            "to": a["to"],
            "value": int(a["value"]),
            "validAfter": int(a["validAfter"]),
            "validBefore": int(a["validBefore"]),
            "nonce": bytes.fromhex(a["nonce"][2:]),
        },
    }
    signer = Account.recover_message(encode_typed_data(full_message=typed), signature=payload["payload"]["signature"])
    assert signer == PAYER


async def test_pays_a_v1_server_with_x_payment() -> None:
    fac = FakeFacilitator()
    rec = Recorder(protected(fac), legacy=True)
    async with client(rec, X402Auth(PAYER_KEY)) as c:
        r = await c.get("/paid")
    assert r.status_code == 200
    assert "payment-required" not in r.history[0].headers  # the client had only the v1 body to go on
    payload = decode(rec.headers[1]["x-payment"])
    assert "payment-signature" not in rec.headers[1]
    assert payload["x402Version"] == 1 and payload["scheme"] == "exact" and payload["network"] == "base-sepolia"
    assert "x-payment-response" in r.headers and "payment-response" not in r.headers
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.network == "base-sepolia"
    assert len(fac.settled) == 1 and fac.settled[0][0].x402_version == 1


async def test_post_body_is_resent_with_the_payment() -> None:
    async def chunks() -> Any:
        yield b'{"prompt": '
        yield b'"hi"}'

    async with client(protected(), X402Auth(PAYER_KEY)) as c:
        r = await c.post("/paid", content=chunks())
    assert r.status_code == 200 and r.text == 'paid:{"prompt": "hi"}'


async def test_per_payment_cap_refuses_before_signing() -> None:
    fac = FakeFacilitator()
    rec = Recorder(protected(fac, routes={"GET /paid": "$0.05"}))
    auth = X402Auth(PAYER_KEY, max_amount_per_payment="$0.01")
    async with client(rec, auth) as c:
        with pytest.raises(
            SpendLimitError,
            match=r"asks \$0\.05, over max_amount_per_payment=\$0\.01.*"
            r"max_amount_per_payment=\"\$0\.05\"",
        ):
            await c.get("/paid")
    assert len(rec.headers) == 1 and fac.settled == [] and auth.spent == 0


@pytest.mark.parametrize(
    ("cap", "pays"), [(999, False), (1000, True), ("$0.000999", False), ("$0.001", True), (None, True)]
)
async def test_per_payment_cap_forms(cap: Any, pays: bool) -> None:
    async with client(protected(), X402Auth(PAYER_KEY, max_amount_per_payment=cap)) as c:
        if pays:
            assert (await c.get("/paid")).status_code == 200
        else:
            with pytest.raises(SpendLimitError):
                await c.get("/paid")


async def test_default_per_payment_cap_is_one_dollar() -> None:
    async with client(protected(routes={"GET /paid": "$1.01"}), X402Auth(PAYER_KEY)) as c:
        with pytest.raises(SpendLimitError, match=r"max_amount_per_payment=\$1"):
            await c.get("/paid")


async def test_total_cap_stops_the_third_payment() -> None:
    fac = FakeFacilitator()
    auth = X402Auth(PAYER_KEY, max_total_spend="$0.0025")
    async with client(protected(fac), auth) as c:
        assert (await c.get("/paid")).status_code == 200
        assert (await c.get("/paid")).status_code == 200
        with pytest.raises(
            SpendLimitError,
            match=r"total spend to \$0\.003, over max_total_spend=\$0\.0025 "
            r"\(\$0\.002 signed already\)",
        ):
            await c.get("/paid")
    assert auth.spent == 2000 and len(fac.settled) == 2


async def test_one_auth_pays_many_concurrent_requests() -> None:
    fac = FakeFacilitator(settle_delay=0.01)
    auth = X402Auth(PAYER_KEY)
    async with client(protected(fac), auth) as c:
        responses = await asyncio.gather(*(c.get(f"/paid?i={i}") for i in range(25)))
    assert [r.status_code for r in responses] == [200] * 25
    assert len({p.data.authorization.nonce for p, _ in fac.settled}) == 25
    settlements = [settlement_of(r) for r in responses]
    assert {s.transaction for s in settlements if s is not None} == {
        "0x" + p.data.authorization.nonce.hex() for p, _ in fac.settled
    }
    assert auth.spent == 25 * 1000


async def test_concurrent_tasks_never_overshoot_the_total_cap() -> None:
    fac = FakeFacilitator(settle_delay=0.01)
    auth = X402Auth(PAYER_KEY, max_total_spend=7000)
    async with client(protected(fac), auth) as c:
        results = await asyncio.gather(*(c.get("/paid") for _ in range(12)), return_exceptions=True)
    assert sum(isinstance(r, httpx.Response) and r.status_code == 200 for r in results) == 7
    assert sum(isinstance(r, SpendLimitError) for r in results) == 5
    assert auth.spent == 7000 and len(fac.settled) == 7


def v2_challenge(amount: str = "1000", **extra_fields: Any) -> dict[str, Any]:
    req = {
        "scheme": "exact",
        "network": NETWORK,
        "amount": amount,
        "asset": USDC,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"},
    }
    resource = {"url": "http://t/x", "description": "", "mimeType": ""}
    return {"x402Version": 2, "error": "Payment required", "resource": resource, "accepts": [req], **extra_fields}


def mock_server(
    challenge: dict[str, Any] | None, seen: list[httpx.Request], paid_status: int = 200
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "payment-signature" in request.headers or "x-payment" in request.headers:
            return httpx.Response(paid_status, text="ok")
        if challenge is None:
            return httpx.Response(402, json={"detail": "top up your account"})
        return httpx.Response(402, headers={"PAYMENT-REQUIRED": encode(challenge)}, json={})

    return httpx.MockTransport(handler)


def test_threads_never_overshoot_the_total_cap() -> None:
    seen: list[httpx.Request] = []
    auth = X402Auth(PAYER_KEY, max_total_spend=20 * 1000)
    outcomes: list[str] = []
    lock = threading.Lock()
    with httpx.Client(transport=mock_server(v2_challenge(), seen), auth=auth, base_url="http://t") as c:

        def worker() -> None:
            for _ in range(4):
                try:
                    outcome = str(c.get("/x").status_code)
                except SpendLimitError:
                    outcome = "capped"
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes.count("200") == 20 and outcomes.count("capped") == 44
    assert auth.spent == 20 * 1000
    nonces = {
        decode(r.headers["payment-signature"])["payload"]["authorization"]["nonce"]
        for r in seen
        if "payment-signature" in r.headers
    }
    assert len(nonces) == 20


async def test_retries_only_once_when_settlement_is_refused() -> None:
    refused = SettleResult(False, NETWORK, "", PAYER, "invalid_exact_evm_insufficient_balance")
    fac = FakeFacilitator(settle_result=refused)
    rec = Recorder(protected(fac))
    async with client(rec, X402Auth(PAYER_KEY)) as c:
        r = await c.get("/paid")
    assert r.status_code == 402 and len(rec.headers) == 2
    settled = settlement_of(r)
    assert settled is not None and not settled.success
    assert settled.error_reason == "invalid_exact_evm_insufficient_balance"


async def test_retries_only_once_when_the_paid_request_is_refused() -> None:
    prices = iter(["$0.001", "$0.002", "$0.003"])  # the price moves between the quote and the retry
    rec = Recorder(protected(routes={"GET /paid": lambda request: next(prices)}))
    async with client(rec, X402Auth(PAYER_KEY)) as c:
        r = await c.get("/paid")
    assert r.status_code == 402 and len(rec.headers) == 2
    assert decode(r.headers["payment-required"])["error"] == "No matching payment requirements"


def test_sync_client_pays_and_streams_from_a_real_server() -> None:
    auth = X402Auth(PAYER_KEY)
    with (
        uvicorn_server("tests.apps:streaming_app", factory=True, env={"STREAM_GAP": "0.25"}) as url,
        httpx.Client(base_url=url, auth=auth) as c,
    ):
        assert c.get("/free").text == "free" and auth.spent == 0
        t0 = time.monotonic()
        arrivals: list[float] = []
        with c.stream("GET", "/stream") as r:
            assert r.status_code == 200 and [h.status_code for h in r.history] == [402]
            settled = settlement_of(r)
            assert settled is not None and settled.success and settled.payer == PAYER
            body = b""
            for chunk in r.iter_raw():
                arrivals.append(time.monotonic() - t0)
                body += chunk
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    # The paid response streams: the first event is not held back until the stream ends (0.75 s later).
    assert arrivals[-1] - arrivals[0] > 0.5
    assert auth.spent == 1000


def test_402_without_a_challenge_is_returned_as_is() -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(transport=mock_server(None, seen), auth=X402Auth(PAYER_KEY)) as c:
        r = c.get("http://t/x")
    assert r.status_code == 402 and r.json() == {"detail": "top up your account"} and len(seen) == 1


def test_a_request_that_already_carries_a_payment_is_not_paid_again() -> None:
    seen: list[httpx.Request] = []
    auth = X402Auth(PAYER_KEY)
    with httpx.Client(transport=mock_server(v2_challenge(), seen, paid_status=402), auth=auth) as c:
        r = c.get("http://t/x", headers={"PAYMENT-SIGNATURE": "bXk="})
    assert r.status_code == 402 and len(seen) == 1 and seen[0].headers["payment-signature"] == "bXk="
    assert auth.spent == 0


def test_extensions_are_echoed_and_floats_in_them_tolerated() -> None:
    seen: list[httpx.Request] = []
    ext = {"bazaar": {"info": {"output": {"example": {"temp": 21.5}}}, "schema": {}}}
    with httpx.Client(transport=mock_server(v2_challenge(extensions=ext), seen), auth=X402Auth(PAYER_KEY)) as c:
        assert c.get("http://t/x").status_code == 200
    payload = decode(seen[1].headers["payment-signature"])
    assert payload["extensions"] == ext and payload["resource"]["url"] == "http://t/x"


@pytest.mark.parametrize(
    "header",
    [
        "not base64!",
        encode([1, 2]),
        encode({"x402Version": 1, "accepts": []}),
        encode({"x402Version": 2, "accepts": "all"}),
    ],
)
def test_unreadable_challenge_raises_payment_client_error(header: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(402, headers={"PAYMENT-REQUIRED": header}))
    with httpx.Client(transport=transport, auth=X402Auth(PAYER_KEY)) as c, pytest.raises(PaymentClientError):
        c.get("http://t/x")


def test_picks_the_first_usable_option_and_explains_refusals() -> None:
    good = v2_challenge()["accepts"][0]
    bad = [
        {**good, "scheme": "upto"},
        {**good, "network": "eip155:999999"},
        {**good, "asset": "0x" + "11" * 20},
        {**good, "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "erc7710"}},
        {**good, "amount": "1e3"},
        {**good, "payTo": "nobody"},
        {**good, "maxTimeoutSeconds": 0},
        "junk",
    ]
    seen: list[httpx.Request] = []
    with httpx.Client(transport=mock_server(v2_challenge(accepts=[*bad, good]), seen), auth=X402Auth(PAYER_KEY)) as c:
        assert c.get("http://t/x").status_code == 200
        assert decode(seen[1].headers["payment-signature"])["accepted"] == good
        transport = mock_server(v2_challenge(accepts=bad), [])
    with (
        httpx.Client(transport=transport, auth=X402Auth(PAYER_KEY)) as c,
        pytest.raises(PaymentClientError, match="none of its 8 payment option") as info,
    ):
        c.get("http://t/x")
    message = str(info.value)
    for reason in (
        "extra.facilitatorAddress",  # an upto option names the facilitator that settles it
        "eip155:999999",
        "not the default token",
        "erc7710",
        "'1e3'",
        "'nobody'",
        "maxTimeoutSeconds 0",
        "not a JSON object",
    ):
        assert reason in message


def test_allowed_networks_preferences_and_extra_assets() -> None:
    sepolia = v2_challenge()["accepts"][0]
    base = {**sepolia, "network": "eip155:8453", "asset": BASE_USDC, "extra": {"name": "USD Coin", "version": "2"}}
    other_token = {**sepolia, "asset": "0x" + "22" * 20, "extra": {"name": "Other", "version": "1"}}

    def paid_with(auth: X402Auth, accepts: list[dict[str, Any]]) -> dict[str, Any]:
        seen: list[httpx.Request] = []
        with httpx.Client(transport=mock_server(v2_challenge(accepts=accepts), seen), auth=auth) as c:
            assert c.get("http://t/x").status_code == 200
        return decode(seen[1].headers["payment-signature"])["accepted"]  # type: ignore[no-any-return]

    assert paid_with(X402Auth(PAYER_KEY), [sepolia, base]) == sepolia
    assert paid_with(X402Auth(PAYER_KEY, prefer_networks=["base"]), [sepolia, base]) == base
    assert paid_with(X402Auth(PAYER_KEY, networks=["eip155:8453"]), [sepolia, base]) == base
    assert paid_with(X402Auth(PAYER_KEY, assets=[other_token["asset"]]), [sepolia, other_token]) == other_token
    with (
        httpx.Client(
            transport=mock_server(v2_challenge(accepts=[sepolia]), []), auth=X402Auth(PAYER_KEY, networks=["base"])
        ) as c,
        pytest.raises(PaymentClientError, match="eip155:84532 is not in networks="),
    ):
        c.get("http://t/x")


def test_settlement_of() -> None:
    assert settlement_of(httpx.Response(200)) is None
    ok = httpx.Response(
        200,
        headers={
            "PAYMENT-RESPONSE": encode({"success": True, "transaction": "0xab", "network": NETWORK, "payer": PAYER})
        },
    )
    assert settlement_of(ok) == SettleResult(True, NETWORK, "0xab", PAYER)
    with pytest.raises(PaymentClientError, match="PAYMENT-RESPONSE"):
        settlement_of(httpx.Response(200, headers={"PAYMENT-RESPONSE": "%%%"}))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"account": "0x1234"}, ConfigurationError),
        ({"account": "zz" * 32}, ConfigurationError),
        ({"account": b"\x00" * 32}, ConfigurationError),
        ({"account": 42}, TypeError),
        ({"max_amount_per_payment": 0.05}, ConfigurationError),
        ({"max_total_spend": -1}, ConfigurationError),
        ({"max_total_spend": "five dollars"}, ConfigurationError),
        ({"networks": ["eip155:424242"]}, ConfigurationError),
        ({"prefer_networks": ["nowhere"]}, ConfigurationError),
        ({"assets": ["0x12"]}, ConfigurationError),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"account": PAYER_KEY, **kwargs}
    account = args.pop("account")
    with pytest.raises(error):
        X402Auth(account, **args)


def test_key_forms_agree_and_the_key_is_not_in_the_repr() -> None:
    forms: list[Callable[[], X402Auth]] = [
        lambda: X402Auth(PAYER_KEY),
        lambda: X402Auth(PAYER_KEY[2:]),
        lambda: X402Auth(bytes.fromhex(PAYER_KEY[2:])),
        lambda: X402Auth(Account.from_key(PAYER_KEY)),
    ]
    assert {f().address for f in forms} == {PAYER}
    assert PAYER_KEY[2:] not in repr(X402Auth(PAYER_KEY)).lower()


class _Sequence(FakeFacilitator):
    """Settles with the given results in turn (the last one repeats)."""

    def __init__(self, *results: SettleResult) -> None:
        super().__init__()
        self.results = list(results)

    async def settle(self, payload: Any, requirements: Any) -> SettleResult:
        self.settled.append((payload, requirements))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


async def test_a_pending_settlement_is_followed_up_with_the_same_payment() -> None:
    pending = SettleResult(False, NETWORK, "0xabc", PAYER, "settlement_pending")
    fac = _Sequence(pending, pending, SettleResult(True, NETWORK, "0xabc", PAYER))
    rec = Recorder(protected(fac))
    auth = X402Auth(PAYER_KEY, max_retry_wait=0.01)
    async with client(rec, auth) as c:
        r = await c.get("/paid")
    assert r.status_code == 200 and [h.status_code for h in r.history] == [402, 503, 503]
    signatures = {h["payment-signature"] for h in rec.headers[1:]}
    assert len(rec.headers) == 4 and len(signatures) == 1  # one payment, resent
    assert auth.spent == 1000 and settlement_of(r) is not None


async def test_settlement_retries_are_bounded() -> None:
    fac = _Sequence(SettleResult(False, NETWORK, "0xabc", PAYER, "settlement_pending"))
    rec = Recorder(protected(fac))
    async with client(rec, X402Auth(PAYER_KEY, max_retry_wait=0.01, settlement_retries=2)) as c:
        r = await c.get("/paid")
    assert r.status_code == 503 and r.json()["error"] == "settlement_pending" and len(rec.headers) == 4


def test_the_sync_client_follows_up_a_lost_settlement_answer() -> None:
    from tests._sync_facilitator_double import SyncFakeFacilitator
    from x402_middleware import PaymentWSGIMiddleware

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"paid"]

    fac = SyncFakeFacilitator(raise_on_settle=True)
    app = PaymentWSGIMiddleware(
        wsgi_app, routes={"GET /paid": "$0.001"}, pay_to=PAY_TO, network=NETWORK, facilitator=fac
    )

    def hook(response: httpx.Response) -> None:
        if response.status_code == 503:
            fac.raise_on_settle = False  # the facilitator answers again after the first lost answer

    with httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url="http://testserver",
        auth=X402Auth(PAYER_KEY, max_retry_wait=0.01),
        event_hooks={"response": [hook]},
    ) as c:
        r = c.get("/paid")
    assert r.status_code == 200 and r.text == "paid" and [h.status_code for h in r.history] == [402, 503]
    assert len(fac.settled) == 1
