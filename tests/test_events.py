"""Settlement lifecycle events reach listeners in order, sync or async, and a failing listener changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, decode, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import ConfigurationError, PaymentMiddleware, PaymentWSGIMiddleware, SettleResult
from x402_middleware.events import PaymentEvent

pytestmark = pytest.mark.anyio
NETWORK = "eip155:84532"


def _app(status: int = 200, fail: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if fail:
            raise RuntimeError("the app failed")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    return app


async def _pay(mw: PaymentMiddleware) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as c:
        challenge = decode((await c.get("/paid")).headers["payment-required"])
        return await c.get("/paid", headers={"PAYMENT-SIGNATURE": pay_v2(challenge)})


def _mw(app: Any, fac: FakeFacilitator, listeners: Any) -> PaymentMiddleware:
    return PaymentMiddleware(
        app, routes={"GET /paid": "$0.001"}, pay_to=PAY_TO, network=NETWORK, facilitator=fac, listeners=listeners
    )


async def test_a_settled_payment_emits_verified_settling_settled_served_to_sync_and_async_listeners() -> None:
    seen: list[str] = []
    got: list[PaymentEvent] = []

    async def later(event: PaymentEvent) -> None:
        seen.append("async:" + event.kind)

    def broken(event: PaymentEvent) -> None:
        raise ValueError("a listener bug")

    r = await _pay(_mw(_app(), FakeFacilitator(), [got.append, broken, later]))
    assert r.status_code == 200  # the broken listener was logged, not raised
    assert [e.kind for e in got] == ["verified", "settling", "settled", "served"]
    assert seen == ["async:verified", "async:settling", "async:settled", "async:served"]
    settled = got[-2]
    assert (
        settled.amount == 1000
        and settled.transaction
        and settled.payment.payer == decode(r.request.headers["payment-signature"])["payload"]["authorization"]["from"]
    )


@pytest.mark.parametrize(
    ("app", "fac", "kinds", "reason"),
    [
        (_app(status=500), FakeFacilitator(), ["verified", "not_settled"], "app_status"),
        (_app(fail=True), FakeFacilitator(), ["verified", "not_settled"], "app_failed"),
        (
            _app(),
            FakeFacilitator(
                settle_result=SettleResult(False, NETWORK, "", None, "invalid_exact_evm_insufficient_balance")
            ),
            ["verified", "settling", "settle_failed"],
            "invalid_exact_evm_insufficient_balance",
        ),
        (
            _app(),
            FakeFacilitator(raise_on_settle=True),
            ["verified", "settling", "settlement_unknown"],
            "settlement_unknown",
        ),
        (
            _app(),
            FakeFacilitator(settle_result=SettleResult(False, NETWORK, "0xabc", None, "settlement_pending")),
            ["verified", "settling", "settlement_unknown"],
            "settlement_pending",
        ),
    ],
    ids=["app-500", "app-raised", "refused", "answer-lost", "pending"],
)
async def test_each_outcome_has_its_event(app: Any, fac: FakeFacilitator, kinds: list[str], reason: str) -> None:
    got: list[PaymentEvent] = []
    try:
        await _pay(_mw(app, fac, got.append))
    except RuntimeError:
        pass  # the app's own exception reaches the server
    assert [e.kind for e in got] == kinds and got[-1].reason == reason


def test_a_wsgi_app_refuses_an_async_listener_at_construction() -> None:
    async def later(event: PaymentEvent) -> None: ...

    def app(environ: Any, start_response: Any) -> list[bytes]:  # pragma: no cover - never called
        return []

    with pytest.raises(ConfigurationError, match="async"):
        PaymentWSGIMiddleware(
            app,
            routes={"GET /p": "$0.01"},
            pay_to=PAY_TO,
            network=NETWORK,
            facilitator=SyncFakeFacilitator(),
            listeners=[later],
        )
