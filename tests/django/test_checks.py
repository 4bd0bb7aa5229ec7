"""System checks for the X402 setting: stable ids, one message per problem, registered by the AppConfig."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from tests._facilitator_double import FakeFacilitator
from tests._sync_facilitator_double import SyncFakeFacilitator
from tests.django import settings as test_settings

GOOD = {
    "ROUTES": {"GET /paid": "$0.001"},
    "PAY_TO": test_settings.PAY_TO,
    "NETWORK": "eip155:84532",
    "FACILITATOR_URL": "https://facilitator.invalid",
}


def ids(**settings: Any) -> list[str]:
    with override_settings(**settings):
        return sorted(m.id for m in run_checks(tags=["x402"]) if m.id)


def test_a_good_setting_has_no_messages() -> None:
    assert ids(X402=GOOD) == []
    assert ids(X402={**test_settings.X402}) == []  # dotted paths to both kinds of facilitator


@pytest.mark.parametrize(
    "setting, expected",
    [
        (None, ["x402.E001"]),
        (["not", "a", "dict"], ["x402.E001"]),
        ({**GOOD, "PAYTO": "0x1"}, ["x402.E002"]),
        ({**GOOD, "ROUTES": {}}, ["x402.E003"]),
        ({**GOOD, "ROUTES": {"FETCH /x": "$1"}}, ["x402.E003"]),
        ({**GOOD, "ROUTES": {"GET /x": 0.5}}, ["x402.E003"]),
        ({**GOOD, "ROUTES": {"GET /x": "$0.0000001"}}, ["x402.E003"]),
        ({**GOOD, "PAY_TO": "0xnope"}, ["x402.E004"]),
        ({**GOOD, "NETWORK": "eip155:999999"}, ["x402.E005"]),
        ({**GOOD, "NETWORK": []}, ["x402.E005"]),
        ({**GOOD, "FACILITATOR_URL": None}, ["x402.E006"]),
        ({**GOOD, "FACILITATOR_URL": "ftp://x"}, ["x402.E006"]),
        ({**GOOD, "FACILITATOR": "no.such.module.Facilitator"}, ["x402.E006"]),
        ({**GOOD, "FACILITATOR": SyncFakeFacilitator()}, ["x402.E006"]),
        ({**GOOD, "SYNC_FACILITATOR": FakeFacilitator()}, ["x402.E006"]),
        ({**GOOD, "MAX_TIMEOUT_SECONDS": 0}, ["x402.E007"]),
        ({**GOOD, "MAX_PRICING_BODY": "1MB"}, ["x402.E007"]),
        ({**GOOD, "RESOURCE_URL": "example.com"}, ["x402.E007"]),
        ({**GOOD, "SETTLE_WHEN": "no.such.predicate"}, ["x402.E007"]),
        ({**GOOD, "STORE": object()}, ["x402.E008"]),
        ({**GOOD, "FACILITATOR_URL": None, "FACILITATOR": FakeFacilitator()}, ["x402.W001"]),
        ({**GOOD, "FACILITATOR_URL": None, "SYNC_FACILITATOR": SyncFakeFacilitator()}, ["x402.W001"]),
        ({**GOOD, "PAY_TO": "0x1", "NETWORK": "nope", "EXTRA": 1}, ["x402.E002", "x402.E004", "x402.E005"]),
    ],
)
def test_each_problem_has_its_stable_id(setting: Any, expected: list[str]) -> None:
    assert ids(X402=setting) == expected


def test_missing_middleware_is_a_warning() -> None:
    assert ids(X402=GOOD, MIDDLEWARE=[]) == ["x402.W002"]


def test_messages_say_how_to_fix() -> None:
    with override_settings(X402={**GOOD, "PAY_TO": "0xnope"}):
        (message,) = run_checks(tags=["x402"])
    assert "PAY_TO" in message.msg and message.hint and message.is_serious()
