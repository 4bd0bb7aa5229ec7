"""examples/starlette_app.py and examples/fastapi_app.py: Starlette's TestClient, and the real paying client.

(Starlette's TestClient is built on ``httpx2`` here, so X402Auth -- an ``httpx.Auth`` -- pays through
``httpx.AsyncClient`` + ``ASGITransport`` in-process, and over a real uvicorn in test_example_servers.py.)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from examples import fastapi_app, starlette_app
from tests._facilitator_double import FakeFacilitator
from tests._payments import PAYER, PAYER_KEY, decode, pay_v1, pay_v2
from x402_middleware import X402Auth, settlement_of
from x402_middleware.devchain import DevChain
from x402_middleware.facilitator import OnChainFacilitator

EXAMPLES = pytest.mark.parametrize("example", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])


def paying_client(app: Any, key: str = PAYER_KEY) -> tuple[httpx.AsyncClient, X402Auth]:
    auth = X402Auth(key, max_amount_per_payment="$0.01")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", auth=auth), auth


@EXAMPLES
def test_test_client_free_route_402_and_paid_v2_v1(example: ModuleType) -> None:
    fac = FakeFacilitator()
    with TestClient(example.create_app(facilitator=fac)) as c:
        assert c.get("/free").json() == {"message": "this one is free"}
        r = c.get("/weather")
        assert r.status_code == 402
        challenge = decode(r.headers["payment-required"])
        assert challenge["accepts"][0]["amount"] == "1000" and challenge["accepts"][0]["network"] == "eip155:84532"
        paid = c.get("/weather", headers={"PAYMENT-SIGNATURE": pay_v2(challenge)})
        assert paid.json() == {"forecast": "sunny", "paid_by": PAYER, "amount": 1000}
        assert decode(paid.headers["payment-response"])["success"] is True
        v1 = c.get("/weather", headers={"X-PAYMENT": pay_v1(r.json())})
        assert v1.status_code == 200 and "x-payment-response" in v1.headers
    assert len(fac.settled) == 2


@EXAMPLES
@pytest.mark.anyio
async def test_real_paying_client(example: ModuleType) -> None:
    fac = FakeFacilitator()
    client, auth = paying_client(example.create_app(facilitator=fac))
    async with client:
        assert (await client.get("/free")).status_code == 200 and auth.spent == 0
        r = await client.get("/weather")
    assert r.status_code == 200 and r.json()["paid_by"] == PAYER and auth.spent == 1000
    settlement = settlement_of(r)
    assert settlement is not None and settlement.success and len(fac.settled) == 1


@EXAMPLES
@pytest.mark.anyio
async def test_paid_route_settles_on_the_dev_chain(example: ModuleType, example_chain: DevChain) -> None:
    chain = example_chain
    facilitator = OnChainFacilitator(chain.rpc_url, chain.facilitator_keys[:1], network=chain.network)
    before = chain.balance_of(chain.pay_to)
    client, _ = paying_client(
        example.create_app(facilitator=facilitator, pay_to=chain.pay_to),
        chain.payer_keys[0 if example is starlette_app else 1],
    )
    async with client:
        r = await client.get("/weather")
    assert r.status_code == 200 and r.json()["amount"] == 1000
    settlement = settlement_of(r)
    assert settlement is not None and settlement.success
    assert chain.balance_of(chain.pay_to) - before == 1000
    receipt = chain.rpc("eth_getTransactionReceipt", settlement.transaction)
    assert receipt["status"] == "0x1" and receipt["from"] == chain.facilitator_addresses[0].lower()
    await facilitator.aclose()
