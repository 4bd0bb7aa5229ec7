"""The middleware on RedisStore, in-process (ASGI and WSGI) with the facilitator doubles and a real redis-server:
served once, replays refused, and failing closed (503 ``store_unavailable``) while Redis is down."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import decode, pay_v2
from tests._redis import RedisServer, free_port
from tests._sync_facilitator_double import SyncFakeFacilitator
from tests.wsgi._apps import RecordingApp
from x402_middleware import PaymentMiddleware
from x402_middleware.stores import SETTLED, PaymentRecord
from x402_middleware.stores.redis import RedisStore
from x402_middleware.wsgi import PaymentWSGIMiddleware

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
NETWORK = "eip155:84532"
ROUTES = {"GET /paid": "$0.001"}


class CountingApp:
    def __init__(self, delay: float = 0.0) -> None:
        self.runs, self.delay = 0, delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.runs += 1
        await asyncio.sleep(self.delay)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"CONTENT"})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def _sign(c: httpx.AsyncClient) -> str:
    return pay_v2(decode((await c.get("/paid")).headers["payment-required"]))


@pytest.mark.anyio
async def test_asgi_on_redis_serves_a_payment_once_and_refuses_replays(redis_url: str) -> None:
    store, app, fac = (
        RedisStore.from_url(redis_url, prefix=f"t-{uuid.uuid4().hex}:"),
        CountingApp(0.2),
        FakeFacilitator(),
    )
    paid = PaymentMiddleware(app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac, store=store)
    async with _client(paid) as c:
        sig = await _sign(c)
        answers = await asyncio.gather(*(c.get("/paid", headers={"PAYMENT-SIGNATURE": sig}) for _ in range(30)))
        replay = await c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    await store.aclose()
    assert sorted(a.status_code for a in answers) == [200] + [402] * 29
    assert {a.json()["error"] for a in answers if a.status_code == 402} == {"payment_in_progress"}
    assert replay.status_code == 402 and replay.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert app.runs == 1 and len(fac.settled) == 1


def test_wsgi_on_redis_serves_once_and_fails_closed_when_redis_is_unreachable(redis_url: str) -> None:
    def protect(store: RedisStore) -> tuple[PaymentWSGIMiddleware, RecordingApp]:
        app = RecordingApp()
        fac = SyncFakeFacilitator()
        return PaymentWSGIMiddleware(
            app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac, store=store
        ), app

    up, up_app = protect(RedisStore.from_url(redis_url, prefix=f"t-{uuid.uuid4().hex}:"))
    down, down_app = protect(RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0"))
    with httpx.Client(transport=httpx.WSGITransport(app=up), base_url="http://testserver") as c:
        sig = pay_v2(decode(c.get("/paid").headers["payment-required"]))
        served = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
        replay = c.get("/paid", headers={"PAYMENT-SIGNATURE": sig})
    with httpx.Client(transport=httpx.WSGITransport(app=down), base_url="http://testserver") as c:
        refused = c.get(
            "/paid", headers={"PAYMENT-SIGNATURE": pay_v2(decode(c.get("/paid").headers["payment-required"]))}
        )
    assert served.status_code == 200 and replay.status_code == 402 and len(up_app.payments) == 1
    assert refused.status_code == 503 and refused.json()["error"] == "store_unavailable"
    assert refused.headers["retry-after"] == "5" and down_app.payments == []


@pytest.mark.anyio
async def test_redis_killed_mid_run_fails_closed_and_claims_nothing_twice_after_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer(persist=True) as server:
        store, app, fac = RedisStore.from_url(server.url), CountingApp(), FakeFacilitator()
        paid = PaymentMiddleware(app, routes=ROUTES, pay_to=PAY_TO, network=NETWORK, facilitator=fac, store=store)
        async with _client(paid) as c:
            before = await _sign(c)
            assert (await c.get("/paid", headers={"PAYMENT-SIGNATURE": before})).status_code == 200

            # Redis dies while a paid request runs: it was claimed, so it is served and settled; the settled
            # record cannot be written, which is logged and does not turn the answer into "pay again".
            app.delay = 0.5
            during = await _sign(c)
            in_flight = asyncio.ensure_future(c.get("/paid", headers={"PAYMENT-SIGNATURE": during}))
            await asyncio.sleep(0.2)
            server.kill()
            with caplog.at_level(logging.ERROR, logger="x402_middleware"):
                answer = await in_flight
            assert answer.status_code == 200 and answer.content == b"CONTENT" and "payment-response" in answer.headers
            assert any("store unavailable" in r.getMessage() for r in caplog.records)

            app.delay, runs, settled = 0.0, app.runs, len(fac.settled)
            fresh = await _sign(c)
            down = [await c.get("/paid", headers={"PAYMENT-SIGNATURE": s}) for s in (fresh, before, during)]
            assert [d.status_code for d in down] == [503] * 3 and {d.json()["error"] for d in down} == {
                "store_unavailable"
            }
            assert all(d.headers["retry-after"] == "5" and b"CONTENT" not in d.content for d in down)
            assert app.runs == runs and len(fac.settled) == settled  # nothing served, nothing charged

            server.start()  # the same data (fsync'd append-only file): no payment is claimed a second time
            again = await asyncio.gather(*(c.get("/paid", headers={"PAYMENT-SIGNATURE": fresh}) for _ in range(20)))
            old = await c.get("/paid", headers={"PAYMENT-SIGNATURE": before})
            lost = await c.get("/paid", headers={"PAYMENT-SIGNATURE": during})
        await store.aclose()
    assert sorted(a.status_code for a in again) == [200] + [402] * 19
    assert old.status_code == 402 and old.json()["error"] == "invalid_exact_evm_nonce_already_used"
    # Its "settled" was never written: it stays claimed (pending) until its TTL, so it is not served again.
    assert lost.status_code == 402 and lost.json()["error"] == "payment_in_progress"
    assert app.runs == runs + 1 and len(fac.settled) == settled + 1


def test_records_are_compact(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=f"t-{uuid.uuid4().hex}:")
    assert store.reserve_sync("k", 60) is None and store.swap_sync(
        "k", store.get("k") or PaymentRecord(""), PaymentRecord(SETTLED, "0xab"), 60
    )
    assert store._client is not None and store._client.get(store.prefix + "k") == b"settled|0xab"
    store.close()
