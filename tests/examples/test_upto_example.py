"""examples/upto_app.py on the dev chain: X402Auth signs the $0.01 maximum, the payer loses only the words' cost."""

from __future__ import annotations

import httpx
import pytest

from examples import upto_app
from x402_middleware import HTTPFacilitator, X402Auth, settlement_of
from x402_middleware.devchain import DevChain

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("n", "cost"), [(25, 2500), (0, 0), (500, 10_000)])  # 500 words: capped at 100
async def test_the_payer_loses_the_actual_cost_at_most_the_maximum(
    example_chain: DevChain, facilitator_url: str, monkeypatch: pytest.MonkeyPatch, n: int, cost: int
) -> None:
    chain = example_chain
    monkeypatch.setenv("X402_FACILITATOR_URL", facilitator_url)
    monkeypatch.setenv("X402_NETWORK", chain.network)
    app = upto_app.create_app(facilitator=HTTPFacilitator(facilitator_url), pay_to=chain.pay_to)  # address: /supported
    payer = chain.payer_addresses[3]
    before = chain.balance_of(payer), chain.balance_of(chain.pay_to)
    auth = X402Auth(chain.payer_keys[3], max_amount_per_payment="$0.01")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", auth=auth) as c:
        r = await c.get(f"/words?n={n}")
    assert r.status_code == 200 and len(r.json()["words"].split()) == min(n, 100)
    settled = settlement_of(r)
    assert settled is not None and settled.success and settled.amount == cost
    assert (chain.balance_of(payer), chain.balance_of(chain.pay_to)) == (before[0] - cost, before[1] + cost)
