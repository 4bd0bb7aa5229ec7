"""Address validation in configuration: only 0x + 40 hex digits (no sign, underscores or spaces int() would take)."""

from __future__ import annotations

import pytest

from tests._facilitator_double import FakeFacilitator
from x402_middleware import ConfigurationError, PaymentMiddleware
from x402_middleware.networks import Asset

GOOD = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never called
    return None


@pytest.mark.parametrize(
    "bad",
    ["0x-" + "a" * 39, "0x" + "a" * 20 + "_" + "a" * 19, "0x " + "a" * 39, "0x" + "g" * 40, GOOD[:-1], GOOD + "0"],
)
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="20-byte hex address"):
        PaymentMiddleware(_app, routes={"GET /x": "$0.01"}, pay_to=bad, facilitator=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="20-byte hex address"):
        Asset(bad, "USD Coin", "2", 6)


def test_a_well_formed_address_is_accepted() -> None:
    PaymentMiddleware(_app, routes={"GET /x": "$0.01"}, pay_to=GOOD, facilitator=FakeFacilitator())
    assert Asset(GOOD.lower(), "USD Coin", "2", 6).address == GOOD.lower()
