"""examples/flask_app.py: Flask's test_client, the real paying client over WSGI, and settlement on the dev chain."""

from __future__ import annotations

import httpx
from flask import Flask

from examples import flask_app
from tests._payments import PAYER, PAYER_KEY, decode, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import SyncHTTPFacilitator, X402Auth, settlement_of
from x402_middleware.devchain import DevChain


def test_test_client_free_route_402_and_paid() -> None:
    fac = SyncFakeFacilitator()
    app = flask_app.create_app(facilitator=fac)
    with app.test_client() as c:
        assert c.get("/free").get_json() == {"message": "this one is free"}
        r = c.get("/weather")
        assert r.status_code == 402 and r.get_json()["accepts"][0]["maxAmountRequired"] == "1000"
        sig = pay_v2(decode(r.headers["PAYMENT-REQUIRED"]))
        paid = c.get("/weather", headers={"PAYMENT-SIGNATURE": sig})
        assert paid.status_code == 200 and paid.get_json() == {"forecast": "sunny", "paid_by": PAYER, "amount": 1000}
        assert decode(paid.headers["PAYMENT-RESPONSE"])["success"] is True
        assert c.get("/weather", headers={"PAYMENT-SIGNATURE": sig}).status_code == 402  # replay
        assert c.get("/missing", headers={"PAYMENT-SIGNATURE": sig}).status_code == 404  # free, unknown route
    assert len(fac.settled) == 1


def _paying(app: Flask, key: str) -> tuple[httpx.Client, X402Auth]:
    auth = X402Auth(key, max_amount_per_payment="$0.01")
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver", auth=auth), auth


def test_real_paying_client() -> None:
    fac = SyncFakeFacilitator()
    client, auth = _paying(flask_app.create_app(facilitator=fac), PAYER_KEY)
    with client:
        r = client.get("/weather")
    assert r.status_code == 200 and r.json()["paid_by"] == PAYER and auth.spent == 1000
    assert settlement_of(r) is not None and len(fac.settled) == 1


def test_paid_route_settles_on_the_dev_chain(example_chain: DevChain, facilitator_url: str) -> None:
    chain = example_chain
    facilitator = SyncHTTPFacilitator(facilitator_url)
    before = chain.balance_of(chain.pay_to)
    client, _ = _paying(flask_app.create_app(facilitator=facilitator, pay_to=chain.pay_to), chain.payer_keys[2])
    with client:
        r = client.get("/weather")
    facilitator.close()
    assert r.status_code == 200
    settlement = settlement_of(r)
    assert settlement is not None and settlement.success
    receipt = chain.rpc("eth_getTransactionReceipt", settlement.transaction)
    assert receipt["status"] == "0x1" and receipt["from"] == chain.facilitator_addresses[1].lower()
    assert chain.balance_of(chain.pay_to) - before == 1000
