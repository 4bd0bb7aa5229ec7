"""The Django middleware's pricing-body cap (``MAX_PRICING_BODY``): 413 with a JSON reason, in both modes."""

from __future__ import annotations

import json

import pytest

from tests.django import urls
from tests.django.test_django import configured
from x402_middleware import RouteConfig

CAP = 1000


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _routes() -> dict[str, RouteConfig]:
    return {"POST /llm": RouteConfig(price=lambda r: "$0.001", price_body=True)}


def test_body_over_the_cap_is_413_before_django_reads_it(mode: str) -> None:
    urls.SEEN.clear()
    c, override = configured(mode, ROUTES=_routes(), MAX_PRICING_BODY=CAP)
    big = json.dumps({"a": "x" * CAP})
    with override:
        r = c.request("post", "/llm", data=big, content_type="application/json")
        assert r.status_code == 413, r.content
        assert r.json()["error"] == "request_body_too_large" and f"at most {CAP} bytes" in r.json()["message"]
        at_the_cap = json.dumps({"a": "x" * (CAP - 9)})
        assert len(at_the_cap) == CAP
        assert c.request("post", "/llm", data=at_the_cap, content_type="application/json").status_code == 402
    assert urls.SEEN == []


def test_json_nested_too_deep_is_400_with_a_reason(mode: str) -> None:
    c, override = configured(mode, ROUTES=_routes())
    with override:
        r = c.request("post", "/llm", data="[" * 400 + "]" * 400, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"] == "request_body_too_deep"
