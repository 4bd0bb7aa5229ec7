from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from examples.gateway.catalog import Catalog, LongContext, ModelInfo, load_catalog
from examples.gateway.errors import InvalidRequest
from examples.gateway.quote import atomic_price, chat_quote, messages_quote, quote_chat, quote_messages


def model(catalog: Catalog, model_id: str) -> ModelInfo:
    found = catalog.get(model_id)
    assert found is not None
    return found


def test_blockrun_published_example(catalog: Catalog) -> None:
    # blockrun-clients.md §2.2: GPT-5.5, ~17 input, 8192 max output tokens -> amount "25685".
    assert atomic_price(model(catalog, "openai/gpt-5.5"), 17, 8192) == 25685


def test_formula_by_hand(catalog: Catalog) -> None:
    gpt52 = model(catalog, "openai/gpt-5.2")  # $1.75 / $14 per 1M
    body = {
        "model": gpt52.id,
        "messages": [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 400}],
        "max_tokens": 1024,
    }
    q = chat_quote(gpt52, body)
    assert q.input_tokens == 110 + 2 * 4  # ceil(440 / 4) + 4 per message
    assert q.max_tokens == 1024
    # 118 x 1.75 + ceil(102.4) = 103 x 14 = 206.5 + 1442 = 1648.5 micro-USD -> + 1000 fee -> ceil 2649
    assert q.amount == 2649
    assert q.description == "GPT-5.2 API call (~118 input, 1024 max output tokens)"
    assert q.description.isascii()


def test_floor_fee_flat_and_free(catalog: Catalog) -> None:
    tiny = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert quote_chat(model(catalog, "deepseek/deepseek-chat"), tiny) == 2000  # floor $0.001 + fee $0.001
    assert quote_chat(model(catalog, "openai/gpt-oss-120b"), tiny) == 2000  # flat, fee included
    assert quote_chat(model(catalog, "openai/gpt-oss-20b"), tiny) == 1000
    assert quote_chat(model(catalog, "nvidia/nemotron-3.5-lightning"), tiny) is None


def test_max_tokens_default_and_clamp(catalog: Catalog) -> None:
    ds = model(catalog, "deepseek/deepseek-chat")  # max_output 8192
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    assert chat_quote(ds, body).max_tokens == 4096  # fees.default_max_tokens
    assert chat_quote(ds, {**body, "max_tokens": 100_000}).max_tokens == 8192
    assert chat_quote(ds, {**body, "max_completion_tokens": 77, "max_tokens": 5}).max_tokens == 77


def test_long_context_multipliers(catalog: Catalog) -> None:
    base = model(catalog, "openai/gpt-6-sol")
    assert base.long_context == LongContext(272000, Decimal(2), Decimal("1.5"))
    below = atomic_price(base, 272_000, 1000)
    above = atomic_price(base, 272_001, 1000)
    # 272000 x $2 + 100 x $10 = 545000; above: 272001 x $4 + 100 x $15 = 1089504 (micro-USD), + 1000 fee
    assert (below, above) == (546_000, 1_090_504)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": True},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"},
        {"messages": []},
        {"messages": "hi"},
        {"messages": [{"content": "no role"}]},
    ],
)
def test_invalid_bodies_are_refused(catalog: Catalog, body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        quote_chat(model(catalog, "openai/gpt-5.2"), body)


def test_context_window_exceeded(catalog: Catalog) -> None:
    small = model(catalog, "openai/gpt-4o")  # 128K
    with pytest.raises(InvalidRequest) as info:
        quote_chat(small, {"messages": [{"role": "user", "content": "x" * 600_000}]})
    assert info.value.code == "CONTEXT_LENGTH_EXCEEDED"


def test_messages_body(catalog: Catalog) -> None:
    claude = model(catalog, "anthropic/claude-sonnet-4.6")
    body = {
        "model": claude.id,
        "system": "s" * 8,
        "max_tokens": 1000,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "t" * 12},
                    {"type": "image", "source": {"type": "url", "url": "u"}},
                ],
            }
        ],
    }
    q = messages_quote(claude, body)
    assert q.input_tokens == 5 + 4 + 1000  # ceil(20 / 4) + 1 message + one image
    assert q.amount == quote_messages(claude, body)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        quote_messages(claude, {k: v for k, v in body.items() if k != "max_tokens"})


# Sizes keep the repr of any example under Hypothesis's 30 kB "overly large repr" warning (an error under
# filterwarnings=error, which once replaced the report of a real failure): at worst 5 messages x 3 parts x
# 150 characters x 10 repr characters ("\U000e0080") = 22.5 kB. For the same reason the catalog is a module
# constant, not a fixture argument: its repr alone is 37 kB.
_text = st.text(max_size=150)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant"]),
        "content": st.one_of(
            _text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text}), max_size=3)
        ),
    }
)
_bodies = st.fixed_dictionaries(
    {"messages": st.lists(_message, min_size=1, max_size=5), "max_tokens": st.integers(1, 1_000_000)}
)


_CATALOG = load_catalog()


@settings(max_examples=150, deadline=None)
@example(body={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1_000_000}, model_id="openai/gpt-5.5")
@given(
    body=_bodies,
    model_id=st.sampled_from(
        ["openai/gpt-5.5", "anthropic/claude-opus-5", "qwen/qwen3.7-max", "tencent/hy4-preview", "openai/gpt-oss-20b"]
    ),
)
def test_quote_is_deterministic_and_bounded(body: dict[str, Any], model_id: str) -> None:
    m = model(_CATALOG, model_id)
    first = quote_chat(m, body)
    # The paid retry re-sends the same JSON, possibly re-serialised with other key order.
    again = json.loads(json.dumps(dict(reversed(list(body.items()))), ensure_ascii=True))
    assert quote_chat(m, again) == first
    assert isinstance(first, int) and first >= 1000
    more = min(body["max_tokens"] + 1000, 1_000_000)
    assert quote_chat(m, {**body, "max_tokens": more}) >= first  # type: ignore[operator]
