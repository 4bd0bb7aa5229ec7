"""One validation for every shell, at construction: a wrong piece fails when the app starts, not on a paid request."""

from __future__ import annotations

from typing import Any

import pytest

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import ConfigurationError, InMemoryStore, PaymentMiddleware, PaymentWSGIMiddleware

ROUTES = {"GET /paid": "$0.001"}


async def _asgi(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
    return None


def _wsgi(environ: Any, start_response: Any) -> list[bytes]:  # pragma: no cover - never called
    return []


class _AsyncOnlyStore:
    async def reserve(self, key: str, ttl: float) -> None: ...

    async def swap(self, *args: Any) -> bool:
        return True


def test_the_asgi_middleware_refuses_a_blocking_facilitator_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="needs an async facilitator such as HTTPFacilitator"):
        PaymentMiddleware(_asgi, routes=ROUTES, pay_to=PAY_TO, facilitator=SyncFakeFacilitator())  # type: ignore[arg-type]


def test_the_wsgi_middleware_refuses_an_async_facilitator_and_an_async_store() -> None:
    with pytest.raises(ConfigurationError, match="needs a blocking facilitator such as SyncHTTPFacilitator"):
        PaymentWSGIMiddleware(_wsgi, routes=ROUTES, pay_to=PAY_TO, facilitator=FakeFacilitator())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SyncPaymentStore"):
        PaymentWSGIMiddleware(
            _wsgi,
            routes=ROUTES,
            pay_to=PAY_TO,
            facilitator=SyncFakeFacilitator(),
            store=_AsyncOnlyStore(),  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"facilitator": object()}, "lacks verify, settle"),
        ({"max_pricing_body": 0}, "max_pricing_body must be a positive"),
        ({"settle_when": 200}, "settle_when must be a callable"),
        ({"listeners": [42]}, "a listener must be a callable"),
    ],
)
def test_both_shells_validate_alike(kwargs: dict[str, Any], message: str) -> None:
    asgi_args: dict[str, Any] = {"routes": ROUTES, "pay_to": PAY_TO, "facilitator": FakeFacilitator(), **kwargs}
    wsgi_args: dict[str, Any] = {**asgi_args, "facilitator": kwargs.get("facilitator", SyncFakeFacilitator())}
    with pytest.raises(ConfigurationError, match=message):
        PaymentMiddleware(_asgi, **asgi_args)
    with pytest.raises(ConfigurationError, match=message):
        PaymentWSGIMiddleware(_wsgi, **wsgi_args)


def test_one_in_memory_store_serves_both_kinds_of_shell() -> None:
    store = InMemoryStore()
    PaymentMiddleware(_asgi, routes=ROUTES, pay_to=PAY_TO, facilitator=FakeFacilitator(), store=store)
    PaymentWSGIMiddleware(_wsgi, routes=ROUTES, pay_to=PAY_TO, facilitator=SyncFakeFacilitator(), store=store)
