"""examples/django_app: Django's Client/AsyncClient with the example's settings, the real paying client over the
project's WSGI and ASGI handlers, and settlement on the dev chain in both modes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, Client, override_settings

from examples.django_app import settings as example
from tests._facilitator_double import FakeFacilitator
from tests._payments import PAYER, PAYER_KEY, decode, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import SyncHTTPFacilitator, X402Auth, settlement_of
from x402_middleware.devchain import DevChain
from x402_middleware.facilitator import OnChainFacilitator


def example_settings(**x402: Any) -> Any:
    """The example project's own settings, with facilitator objects instead of its FACILITATOR_URL."""
    assert example.INSTALLED_APPS == ["x402_middleware.django"]  # what the test process has installed
    return override_settings(
        ROOT_URLCONF=example.ROOT_URLCONF,
        MIDDLEWARE=example.MIDDLEWARE,
        X402={**example.X402, "FACILITATOR_URL": None, **x402},
    )


@pytest.fixture
def doubles() -> Iterator[tuple[FakeFacilitator, SyncFakeFacilitator]]:
    fac, sync_fac = FakeFacilitator(), SyncFakeFacilitator()
    with example_settings(FACILITATOR=fac, SYNC_FACILITATOR=sync_fac):
        yield fac, sync_fac


def test_client_free_402_and_paid_sync(doubles: tuple[FakeFacilitator, SyncFakeFacilitator]) -> None:
    c = Client()
    assert c.get("/free").json() == {"message": "this one is free"}
    r = c.get("/weather")
    assert r.status_code == 402 and decode(r["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "1000"
    paid = c.get("/weather", headers={"PAYMENT-SIGNATURE": pay_v2(decode(r["PAYMENT-REQUIRED"]))})
    assert paid.json() == {"forecast": "sunny", "paid_by": PAYER, "amount": 1000}
    assert len(doubles[1].settled) == 1 and doubles[0].settled == []


@pytest.mark.anyio
async def test_async_client_paid(doubles: tuple[FakeFacilitator, SyncFakeFacilitator]) -> None:
    c = AsyncClient()
    r = await c.get("/weather")
    paid = await c.get("/weather", headers={"PAYMENT-SIGNATURE": pay_v2(decode(r["PAYMENT-REQUIRED"]))})
    assert paid.status_code == 200 and paid.json()["paid_by"] == PAYER
    assert len(doubles[0].settled) == 1 and doubles[1].settled == []


def test_real_paying_client_over_the_wsgi_handler(doubles: tuple[FakeFacilitator, SyncFakeFacilitator]) -> None:
    auth = X402Auth(PAYER_KEY, max_amount_per_payment="$0.01")
    with httpx.Client(transport=httpx.WSGITransport(app=WSGIHandler()), base_url="http://testserver", auth=auth) as c:
        assert c.get("/free").status_code == 200
        r = c.get("/weather")
    assert r.status_code == 200 and settlement_of(r) is not None and auth.spent == 1000


@pytest.mark.anyio
async def test_real_paying_client_over_the_asgi_handler(doubles: tuple[FakeFacilitator, SyncFakeFacilitator]) -> None:
    auth = X402Auth(PAYER_KEY, max_amount_per_payment="$0.01")
    transport = httpx.ASGITransport(app=ASGIHandler())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", auth=auth) as c:
        r = await c.get("/weather")
    assert r.status_code == 200 and r.json()["paid_by"] == PAYER and len(doubles[0].settled) == 1


def test_settles_on_the_dev_chain_under_wsgi(example_chain: DevChain, facilitator_url: str) -> None:
    chain = example_chain
    facilitator = SyncHTTPFacilitator(facilitator_url)
    before = chain.balance_of(chain.pay_to)
    with (
        example_settings(PAY_TO=chain.pay_to, FACILITATOR=FakeFacilitator(), SYNC_FACILITATOR=facilitator),
        httpx.Client(
            transport=httpx.WSGITransport(app=WSGIHandler()),
            base_url="http://testserver",
            auth=X402Auth(chain.payer_keys[3]),
        ) as c,
    ):
        r = c.get("/weather")
    facilitator.close()
    settlement = settlement_of(r)
    assert r.status_code == 200 and settlement is not None and settlement.success
    receipt = chain.rpc("eth_getTransactionReceipt", settlement.transaction)
    assert receipt["status"] == "0x1" and receipt["from"] == chain.facilitator_addresses[1].lower()
    assert chain.balance_of(chain.pay_to) - before == 1000


@pytest.mark.anyio
async def test_settles_on_the_dev_chain_under_asgi(example_chain: DevChain) -> None:
    chain = example_chain
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network)
    before = chain.balance_of(chain.pay_to)
    with example_settings(PAY_TO=chain.pay_to, FACILITATOR=facilitator, SYNC_FACILITATOR=SyncFakeFacilitator()):
        transport = httpx.ASGITransport(app=ASGIHandler())  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", auth=X402Auth(chain.payer_keys[3])
        ) as c:
            r = await c.get("/weather")
    await facilitator.aclose()
    settlement = settlement_of(r)
    assert r.status_code == 200 and r.json()["amount"] == 1000 and settlement is not None
    receipt = chain.rpc("eth_getTransactionReceipt", settlement.transaction)
    assert receipt["status"] == "0x1" and receipt["from"] == chain.facilitator_addresses[0].lower()
    assert chain.balance_of(chain.pay_to) - before == 1000
