"""The ``upto`` flow under Django, sync and async: the view's ``charge(request, amount)`` is what is settled."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings

from tests._payments import decode
from tests.django import settings as test_settings
from tests.test_usage import MAX, NET, AsyncFacilitator, SyncFacilitator, pay
from x402_middleware import RouteConfig


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_django_whole_and_streamed_responses_settle_the_charge(mode: str) -> None:
    fac = SyncFacilitator() if mode == "sync" else AsyncFacilitator()
    upto = RouteConfig(price="$5", scheme="upto")
    conf = {
        **test_settings.X402,
        "ROUTES": {"GET /upto": upto, "GET /upto-stream": upto},
        "PAY_TO": "alice",
        "NETWORK": NET,
        "FACILITATOR": fac if mode == "async" else AsyncFacilitator(),
        "SYNC_FACILITATOR": fac if mode == "sync" else SyncFacilitator(),
    }
    client = (AsyncClient if mode == "async" else Client)()

    def get(path: str, **headers: str) -> Any:
        call: Any = client.get
        return async_to_sync(call)(path, headers=headers) if mode == "async" else call(path, headers=headers)

    with override_settings(X402=conf):
        for path, amount in (("/upto", 11), ("/upto-stream", 13)):
            challenge = get(path)
            assert challenge.status_code == 402
            r = get(path, **{"PAYMENT-SIGNATURE": pay(challenge["PAYMENT-REQUIRED"])})
            assert r.status_code == 200
            if r.streaming:
                content = b"".join(async_to_sync(_drain)(r) if mode == "async" else r.streaming_content)
                assert content.endswith(b"[DONE]")
                assert not r.has_header("PAYMENT-RESPONSE")
            else:
                assert decode(r["PAYMENT-RESPONSE"])["amount"] == str(amount)
            assert fac.settled[-1] == amount
    assert fac.verified == [MAX, MAX]


async def _drain(response: Any) -> list[bytes]:
    return [chunk async for chunk in response.streaming_content]
