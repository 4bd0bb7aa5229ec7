"""Every row of ``GET /api/v1/models`` passes BlockRun's catalog validator, which drops the whole list on one bad row.

The rules (issue 13, from BlockRun's SDK): ``id`` matches ``^[a-zA-Z0-9][a-zA-Z0-9._+/-]*$`` and is unique;
``name`` non-empty; ``categories`` an array of strings; ``pricing`` an object; ``billing_mode`` a string where
``paid`` has numeric ``pricing.input``/``pricing.output``, ``flat`` numeric ``pricing.flat`` and ``free`` zero
prices; ``context_window`` and ``max_output``, when present, positive integers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette

from .conftest import client_for

_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._+/-]*$")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def row_problems(row: Any) -> list[str]:
    """What BlockRun's validator would refuse in one row (empty: the row passes)."""
    if not isinstance(row, dict):
        return ["not an object"]
    problems = []
    if not isinstance(row.get("id"), str) or not _ID.match(row["id"]):
        problems.append(f"id {row.get('id')!r}")
    if not isinstance(row.get("name"), str) or not row["name"]:
        problems.append("name")
    categories = row.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        problems.append("categories")
    pricing = row.get("pricing")
    mode = row.get("billing_mode")
    if not isinstance(pricing, dict):
        problems.append("pricing")
        pricing = {}
    if not isinstance(mode, str):
        problems.append("billing_mode")
    elif mode == "paid" and not (_number(pricing.get("input")) and _number(pricing.get("output"))):
        problems.append("paid pricing")
    elif mode == "flat" and not _number(pricing.get("flat")):
        problems.append("flat pricing")
    elif mode == "free" and any(_number(v) and v != 0 for v in pricing.values()):
        problems.append("free pricing")
    for key in ("context_window", "max_output"):
        if key in row and (type(row[key]) is not int or row[key] <= 0):
            problems.append(key)
    return problems


def catalog_problems(rows: list[Any]) -> dict[str, list[str]]:
    ids = [r.get("id") for r in rows if isinstance(r, dict)]
    out = {str(r.get("id") if isinstance(r, dict) else i): p for i, r in enumerate(rows) if (p := row_problems(r))}
    for dup in {i for i in ids if ids.count(i) > 1}:
        out.setdefault(str(dup), []).append("duplicate id")
    return out


@pytest.mark.parametrize(
    "row",
    [
        {"id": "openai/gpt:5", "name": "x", "categories": [], "pricing": {}, "billing_mode": "free"},
        {"id": "a/b", "name": "", "categories": [], "pricing": {}, "billing_mode": "free"},
        {"id": "a/b", "name": "x", "categories": "chat", "pricing": {}, "billing_mode": "free"},
        {"id": "a/b", "name": "x", "categories": [], "pricing": {"input": "1"}, "billing_mode": "paid"},
        {"id": "a/b", "name": "x", "categories": [], "pricing": {"input": 1, "output": 1}, "billing_mode": "flat"},
        {"id": "a/b", "name": "x", "categories": [], "pricing": {"input": 1}, "billing_mode": "free"},
        {"id": "a/b", "name": "x", "categories": [], "pricing": {}, "billing_mode": "free", "max_output": 0},
        {"id": "a/b", "name": "x", "categories": [], "pricing": {}, "billing_mode": "free", "context_window": 1.5},
    ],
)
def test_the_validator_refuses_bad_rows(row: dict[str, Any]) -> None:
    assert row_problems(row)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/models?format=json", "/v1/models"])
async def test_every_listed_row_passes(make_app: Callable[..., Starlette], path: str) -> None:
    app = make_app()
    async with client_for(app) as c:
        r = await c.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    rows = r.json()["data"]
    assert len(rows) == len(app.state.gateway.available_models()) + len(app.state.gateway.catalog.media) >= 80
    assert catalog_problems(rows) == {}
    assert {row["billing_mode"] for row in rows} == {"paid", "flat", "free"}  # every rule was exercised
    assert {"image", "audio", "video"} <= {c for row in rows for c in row["categories"]}  # media rows too
