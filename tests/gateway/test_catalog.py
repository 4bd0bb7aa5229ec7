from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from examples.gateway.catalog import DEFAULT_CATALOG, CatalogError, load_catalog, parse_catalog

RAW: dict[str, Any] = json.loads(DEFAULT_CATALOG.read_text())


def test_bundled_catalog_matches_the_blockrun_table() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 80
    gpt55 = catalog.get("openai/gpt-5.5")
    assert gpt55 is not None
    assert (gpt55.input_per_m, gpt55.output_per_m) == (Decimal("5.00"), Decimal("30.00"))
    assert gpt55.context_window == 1_050_000 and gpt55.max_output == 128_000
    assert catalog.get("qwen/qwen3.7-max").input_per_m == Decimal("1.475")  # type: ignore[union-attr]
    assert catalog.get("openai/gpt-oss-120b").flat_usd == Decimal("0.002")  # type: ignore[union-attr]
    assert catalog.get("nvidia/nemotron-3.5-lightning").is_free  # type: ignore[union-attr]
    assert catalog.fees.gateway_fee_usd == Decimal("0.001") and catalog.fees.output_share == Decimal("0.1")
    for model in catalog:
        assert model.name.isascii() and model.pool in catalog.pools
        assert all(not isinstance(v, float) for v in (model.input_per_m, model.output_per_m, model.flat_usd))


def test_catalog_prices_are_strings_in_the_file() -> None:
    for row in RAW["models"]:
        for value in row.get("pricing", {}).values():
            assert isinstance(value, str)


def _broken(mutate: Any) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["models"][0]["pricing"].update(input=2.5), "decimal string"),
        (lambda d: d["models"][0].update(billing_mode="cheap"), "billing_mode"),
        (lambda d: d["models"][0].update(colour="red"), "unknown field"),
        (lambda d: d["models"][0].update(pool="nowhere"), "pool 'nowhere'"),
        (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "duplicate model id"),
        (lambda d: d["models"][0].update(max_output=10**9), "exceeds context_window"),
        (lambda d: d["models"][0].update(id="no-slash"), "provider/model-name"),
        (lambda d: d["models"][0].update(id="openai/gpt:5"), "provider/model-name"),  # BlockRun's SDKs refuse ':'
        (lambda d: d["models"][0].update(name="GPT\u20145"), "ASCII"),
        (lambda d: d["pools"]["openai"][1].update(api_key="sk-123"), "api_key_env"),
        (lambda d: d["pools"]["openai"][1].update(kind="soap"), "kind must be one of"),
        (lambda d: d["fees"].update(output_share="1.5"), "output_share"),
        (lambda d: d["models"][1].update(billing_mode="flat", pricing={"flat": "0.0000001"}), "6 decimals"),
        (lambda d: d.update(models=[]), "non-empty list"),
    ],
)
def test_catalog_errors_say_where_and_how(mutate: Any, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as info:
        parse_catalog(_broken(mutate), source="catalog.json")
    assert str(info.value).startswith("catalog.json")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(bad)
