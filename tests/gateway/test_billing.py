"""Usage billing's pure parts: which models offer ``upto``, the charge from a usage, metrics of a usage line.

The paid flow on the dev chain is tests/gateway/test_usage_billing.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from examples.gateway.billing import UsageBilling, usage_charge
from examples.gateway.catalog import CatalogError, load_catalog
from examples.gateway.config import GatewayConfig
from examples.gateway.metrics import GatewayMetrics
from examples.gateway.prepare import PREPARED
from examples.gateway.service import CHAT, Gateway
from x402_middleware import PaymentOption, Served, TokenAmount
from x402_middleware.models import Payment, PaymentRequirements
from x402_middleware.networks import get_network

ADDRESS = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


def _catalog_with(tmp_path: Path, settle: Any) -> Path:
    data = json.loads(Path("examples/gateway/catalog.json").read_text())
    data["models"][0]["settle"] = settle
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return path


def test_a_model_can_be_billed_by_usage_in_an_exact_deployment(tmp_path: Path) -> None:
    catalog = load_catalog(_catalog_with(tmp_path, "usage"))
    usage_model, other = catalog.models["openai/gpt-6-astra"], catalog.models["openai/gpt-5.2"]
    billing = UsageBilling("exact", ("eip155:8453", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"), ADDRESS)
    assert billing.price(other, 5000) == TokenAmount(5000)
    options = billing.price(usage_model, 5000)
    assert [(o.scheme, o.network) for o in options] == [
        ("exact", "eip155:8453"),
        ("exact", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
        ("upto", "eip155:8453"),  # upto is Permit2: EVM networks only
    ]
    assert options[-1] == PaymentOption(
        "eip155:8453", TokenAmount(5000), scheme="upto", extra={"facilitatorAddress": ADDRESS}
    )
    with pytest.raises(CatalogError, match="settle must be one of exact, usage"):
        load_catalog(_catalog_with(tmp_path, "later"))


def _served(gateway: Gateway, body: dict[str, Any], trace: dict[str, Any], maximum: int = 9000) -> Served:
    prepared = gateway.prepare(CHAT, body)
    network = get_network("eip155:8453")
    assert network.asset is not None

    req = PaymentRequirements(network, network.asset, maximum, ADDRESS, scheme="upto")
    payment = Payment("0xpayer", maximum, req, None)  # type: ignore[arg-type]
    return Served({PREPARED: prepared, "gateway.trace": trace}, 200, {}, payment)


def test_the_charge_is_the_usage_at_most_the_quote_and_the_maximum_without_usage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(GatewayConfig())
    body = {"model": "openai/gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
    trace: dict[str, Any] = {"usage": {"prompt_tokens": 17, "completion_tokens": 40}}
    assert usage_charge(_served(gateway, body, trace)) == 2285 and trace["usage_charge"] == 2285
    capped: dict[str, Any] = {"usage": {"prompt_tokens": 17, "completion_tokens": 4000}}
    assert usage_charge(_served(gateway, body, capped, maximum=9000)) == 9000 and capped["usage_capped"] > 9000
    with caplog.at_level(logging.WARNING, "examples.gateway"):
        assert usage_charge(_served(gateway, body, {"usage": None})) is None  # the payment layer settles the maximum
    assert "reported no usage" in caplog.text
    assert usage_charge(_served(gateway, body, {"usage": {}, "stream_error": "reset"})) == 0  # a failed stream


def test_usage_and_loss_metrics_come_from_the_log_line() -> None:
    metrics = GatewayMetrics()
    base = {"route": "/v1/chat/completions", "method": "POST", "status": 200, "network": "eip155:8453", "asset": "0xa"}
    metrics.observe({**base, "scheme": "upto", "settled": True, "paid": 2285, "max": 9000})
    metrics.observe({**base, "scheme": "upto", "settled": False, "lost": 777, "payment_error": "transaction_failed"})
    assert metrics.usage_settlements.value(network="eip155:8453") == 1
    assert metrics.usage_charged_atomic.value(network="eip155:8453", asset="0xa") == 2285
    assert metrics.usage_maximum_atomic.value(network="eip155:8453", asset="0xa") == 9000
    assert metrics.payments_lost.value(network="eip155:8453", reason="transaction_failed") == 1
    assert metrics.lost_atomic.value(network="eip155:8453", asset="0xa") == 777
    assert metrics.payments_failed.value(network="eip155:8453", reason="transaction_failed") == 0
    assert replace(GatewayConfig(), billing="usage").billing == "usage"
    with pytest.raises(ValueError, match="billing must be one of"):
        GatewayConfig(billing="later")
