"""Built-in pricing policies: exact money, determinism, rounding up, client errors vs bugs."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._facilitator_double import FakeFacilitator
from tests._payments import PAY_TO, decode, pay_v2
from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware import ConfigurationError, PaymentMiddleware, RouteConfig, TokenAmount, UnpriceableRequestError
from x402_middleware.networks import Asset
from x402_middleware.pricing import (
    FixedPrice,
    LLMQuote,
    PaymentOption,
    PaymentOptions,
    PaymentRequest,
    RouteTable,
    TokenQuote,
    estimate_input_tokens,
)
from x402_middleware.wsgi import PaymentWSGIMiddleware

NETWORK = "eip155:84532"


def chat(model: str = "m", content: str = "hello", **extra: Any) -> PaymentRequest:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return PaymentRequest("POST", "/v1/chat/completions", body=body)


# -- FixedPrice / RouteTable / PaymentOptions ------------------------------------------------


def test_fixed_price_parses_once_and_refuses_floats_and_garbage() -> None:
    assert FixedPrice("$0.001")(PaymentRequest("GET", "/")) == Decimal("0.001")
    assert FixedPrice(TokenAmount(5))(PaymentRequest("GET", "/")) == TokenAmount(5)
    assert FixedPrice(None)(PaymentRequest("GET", "/")) is None
    for bad in (0.01, "cheap", "-$1", 3, [1]):
        with pytest.raises(ConfigurationError):
            FixedPrice(bad)  # type: ignore[arg-type]


def test_route_table_first_match_wins_and_passes_path_params_to_nested_policies() -> None:
    seen: list[Any] = []

    def by_id(req: PaymentRequest) -> Any:
        seen.append(dict(req.path_params))
        return TokenAmount(int(req.path_params["id"]))

    table = RouteTable(
        {"GET /items/free": None, "GET /items/{id}": by_id, "/files/*": "$0.10", "POST /items/{id}": "$1"},
        default="$0.002",
    )
    assert table(PaymentRequest("GET", "/items/free")) is None
    assert table(PaymentRequest("GET", "/items/42")) == TokenAmount(42) and seen == [{"id": "42"}]
    assert table(PaymentRequest("HEAD", "/items/7")) == TokenAmount(7)  # HEAD matches GET
    assert table(PaymentRequest("DELETE", "/files/a/b.txt")) == Decimal("0.10")
    assert table(PaymentRequest("POST", "/items/1")) == Decimal(1)
    assert table(PaymentRequest("GET", "/elsewhere")) == Decimal("0.002")
    assert RouteTable({"/x": "$1"})(PaymentRequest("GET", "/y")) is None  # free by default
    with pytest.raises(ConfigurationError):
        RouteTable({"BREW /x": "$1"})
    with pytest.raises(ConfigurationError):
        RouteTable({"/x": 1.5})


def test_payment_options_fill_in_the_price_per_network_and_asset() -> None:
    eurc = Asset("0x808456652fdb597867f38412077A9182bf77359F", "EURC", "2", symbol="EURC")
    options = PaymentOptions(
        "$0.01",
        [
            PaymentOption("eip155:8453"),
            PaymentOption(NETWORK),
            PaymentOption("eip155:8453", price=TokenAmount(9000), asset=eurc),
        ],
    )
    out = options(PaymentRequest("GET", "/"))
    assert isinstance(out, list) and all(isinstance(o, PaymentOption) for o in out)
    assert [(o.network, o.price, o.asset) for o in out] == [
        ("eip155:8453", Decimal("0.01"), None),
        (NETWORK, Decimal("0.01"), None),
        ("eip155:8453", TokenAmount(9000), eurc),
    ]
    assert PaymentOptions(lambda r: None, [PaymentOption(NETWORK)])(PaymentRequest("GET", "/")) is None


# -- TokenQuote: the BlockRun formula ---------------------------------------------------------


def test_blockrun_formula_worked_examples() -> None:
    sonnet = TokenQuote("3.00", "15.00")
    # 1000 x $3/M + 10% x 1000 x $15/M = $0.0045; floor $0.001 does not apply; + $0.001 fee.
    assert sonnet.atomic(1000, 1000) == 5500
    # Tiny request: the floor applies, then the fee: $0.002.
    assert sonnet.atomic(1, 1) == 2000
    # BlockRun's published quote (blockrun-clients.md §2.2, §6): GPT-5.5 at $5/$30, 17 input tokens, 8192 max
    # tokens -> 17 x 5 + ceil(819.2) = 820 x 30 = 24685 micro-USD, + $0.001 fee = "25685".
    assert TokenQuote("5.00", "30.00").atomic(17, 8192) == 25685
    # Markup applies to the token cost, before the floor and the fee.
    assert TokenQuote("3.00", "15.00", markup_percent="10").atomic(1000, 1000) == 5950
    assert TokenQuote("3.00", "15.00", floor="0", flat_fee="0").atomic(0, 0) == 0


def test_quote_rounds_up_to_the_atomic_unit() -> None:
    q = TokenQuote("0.14", "0.28", floor="0", flat_fee="0")
    # 7 x 0.14 / 1M = 0.00000098 USD = 0.98 atomic units -> 1, never 0.
    assert q.usd(7, 0) == Decimal("0.00000098") and q.atomic(7, 0) == 1
    assert q.atomic(1_000_000, 0) == 140_000  # exact values are not bumped


@settings(max_examples=300, deadline=None)
@given(
    inp=st.integers(0, 2_000_000),
    max_tokens=st.integers(1, 1_000_000),
    rate_in=st.decimals("0", "200", places=3),
    rate_out=st.decimals("0", "200", places=3),
    share=st.decimals("0", "1", places=2),
    markup=st.decimals("0", "500", places=1),
    floor=st.decimals("0", "0.01", places=6),
    fee=st.decimals("0", "0.01", places=6),
)
def test_quote_equals_the_exact_rational_formula_rounded_up(
    inp: int,
    max_tokens: int,
    rate_in: Decimal,
    rate_out: Decimal,
    share: Decimal,
    markup: Decimal,
    floor: Decimal,
    fee: Decimal,
) -> None:
    q = TokenQuote(rate_in, rate_out, output_share=share, markup_percent=markup, floor=floor, flat_fee=fee)
    f = Fraction
    output_tokens = math.ceil(f(share) * max_tokens)
    cost = (inp * f(rate_in) + output_tokens * f(rate_out)) / 1_000_000 * (1 + f(markup) / 100)
    usd = max(cost, f(floor)) + f(fee)
    assert q.atomic(inp, max_tokens) == math.ceil(usd * 10**6)
    assert q.atomic(inp, max_tokens) == q.atomic(inp, max_tokens)


@settings(max_examples=100, deadline=None)
@given(
    messages=st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": st.text()}), max_size=5
    )
)
def test_estimate_is_deterministic_and_ignores_key_order(messages: list[dict[str, str]]) -> None:
    reordered = [dict(reversed(list(m.items()))) for m in messages]
    body, other = {"messages": messages, "model": "m"}, {"model": "x", "messages": reordered, "max_tokens": 5}
    assert estimate_input_tokens(body) == estimate_input_tokens(json.loads(json.dumps(other)))


def test_token_quote_reads_max_tokens_and_refuses_bad_input_with_400_reasons() -> None:
    q = TokenQuote("3", "15")
    default = q(chat())
    assert default == TokenAmount(q.atomic(estimate_input_tokens(chat().body), 1024))
    assert q(chat(max_tokens=100_000)).amount > default.amount
    assert q(chat(max_completion_tokens=100_000)) == q(chat(max_tokens=100_000))
    for bad in (0, -1, 1_000_001, "100", 1.5, True):
        with pytest.raises(UnpriceableRequestError) as err:
            q(chat(max_tokens=bad))
        assert err.value.reason == "invalid_max_tokens" and err.value.status_code == 400
    with pytest.raises(UnpriceableRequestError, match="JSON object"):
        q(PaymentRequest("POST", "/v1/chat/completions", body=None))


def test_token_quote_config_is_validated() -> None:
    for kwargs in ({"output_share": "1.5"}, {"markup_percent": "-5"}, {"floor": 0.001}, {"default_max_tokens": 0}):
        with pytest.raises(ConfigurationError):
            TokenQuote("1", "2", **kwargs)
    with pytest.raises(ConfigurationError):
        TokenQuote(1.5, "2")  # type: ignore[arg-type]


def test_llm_quote_per_model_flat_free_and_unknown() -> None:
    quote = LLMQuote.from_rates(
        {
            "anthropic/claude-sonnet-4.6": ("3.00", "15.00"),
            "openai/gpt-oss-20b": "$0.001",
            "nvidia/nemotron-3.5-lightning": None,
        },
        markup_percent="5",
    )
    sonnet = quote.models["anthropic/claude-sonnet-4.6"]
    assert isinstance(sonnet, TokenQuote) and sonnet.markup_percent == Decimal(5)
    assert quote(chat("anthropic/claude-sonnet-4.6")) == sonnet(chat("anthropic/claude-sonnet-4.6"))
    assert quote(chat("openai/gpt-oss-20b")) == Decimal("0.001")
    assert quote(chat("nvidia/nemotron-3.5-lightning")) is None
    for body, reason in (
        ({"model": "nope"}, "unknown_model"),
        ({"messages": []}, "missing_model"),
        ([1, 2], "invalid_request_body"),
    ):
        with pytest.raises(UnpriceableRequestError) as err:
            quote(PaymentRequest("POST", "/", body=body))
        assert err.value.reason == reason
    fallback = LLMQuote({"a": "$1"}, default=TokenQuote("1", "1"))
    assert isinstance(fallback(chat("zzz")), TokenAmount)


# -- Through the middlewares ------------------------------------------------------------------


async def _app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok":true}']


def _asgi_client(routes: dict[str, Any], network: Any = NETWORK) -> httpx.AsyncClient:
    mw = PaymentMiddleware(_app, routes=routes, pay_to=PAY_TO, network=network, facilitator=FakeFacilitator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://testserver")


def _wsgi_client(routes: dict[str, Any], network: Any = NETWORK) -> httpx.Client:
    mw = PaymentWSGIMiddleware(
        _wsgi_app, routes=routes, pay_to=PAY_TO, network=network, facilitator=SyncFakeFacilitator()
    )
    return httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://testserver")


QUOTE = LLMQuote.from_rates({"m": ("3.00", "15.00"), "free": None})
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000}


def test_llm_quote_through_wsgi_quote_pay_and_price_mismatch() -> None:
    routes = {"POST /v1/chat/completions": RouteConfig(price=QUOTE, price_body=True)}
    expected = QUOTE.models["m"].atomic(estimate_input_tokens(BODY), 4000)
    with _wsgi_client(routes) as c:
        r = c.post("/v1/chat/completions", json=BODY)
        ch = decode(r.headers["payment-required"])
        # 12 estimated input tokens x $3/M + 10% x 4000 x $15/M = $0.006036, + $0.001 fee
        assert ch["accepts"][0]["amount"] == str(expected) == "7036"
        assert c.post("/v1/chat/completions", json=BODY, headers={"PAYMENT-SIGNATURE": pay_v2(ch)}).status_code == 200
        # A client that pays the quote for one body and sends a bigger one gets a clear reason, not content.
        sig = pay_v2(decode(c.post("/v1/chat/completions", json=BODY).headers["payment-required"]))
        r = c.post("/v1/chat/completions", json={**BODY, "max_tokens": 9000}, headers={"PAYMENT-SIGNATURE": sig})
        assert r.status_code == 402 and r.json()["error"] == "No matching payment requirements"
        assert "price" in r.json()["message"] and "again without payment" in r.json()["message"]
        assert c.post("/v1/chat/completions", json={**BODY, "model": "free"}).status_code == 200
        bad = c.post("/v1/chat/completions", json={**BODY, "max_tokens": "lots"})
        assert bad.status_code == 400 and bad.json() == {
            "error": "invalid_max_tokens",
            "message": "max_tokens must be an integer between 1 and 1000000, got 'lots'",
        }
        assert c.post("/v1/chat/completions", content=b"{not json").status_code == 400


@pytest.mark.anyio
async def test_llm_quote_and_async_policies_through_asgi() -> None:
    async def async_route_price(req: PaymentRequest) -> Any:
        return TokenAmount(int(req.path_params["n"]))

    routes = {
        "POST /v1/chat/completions": RouteConfig(price=QUOTE, price_body=True),
        "GET /n/{n}": RouteTable({"GET /n/{n}": async_route_price}),
        "GET /multi": PaymentOptions("$0.01", [PaymentOption("eip155:8453"), PaymentOption(NETWORK)]),
    }
    async with _asgi_client(routes) as c:
        r = await c.post("/v1/chat/completions", json=BODY)
        assert decode(r.headers["payment-required"])["accepts"][0]["amount"] == "7036"
        assert (await c.post("/v1/chat/completions", json={"model": "zzz"})).json()["error"] == "unknown_model"
        assert decode((await c.get("/n/77")).headers["payment-required"])["accepts"][0]["amount"] == "77"
        multi = decode((await c.get("/multi")).headers["payment-required"])
        assert [(a["network"], a["amount"]) for a in multi["accepts"]] == [("eip155:8453", "10000"), (NETWORK, "10000")]
        r = await c.get("/multi", headers={"PAYMENT-SIGNATURE": pay_v2(multi, index=1)})
        assert r.status_code == 200


def test_fixed_price_routes_are_priced_once_at_start_up() -> None:
    mw = PaymentWSGIMiddleware(
        _wsgi_app,
        routes={"GET /a": FixedPrice("$0.002")},
        pay_to=PAY_TO,
        network=NETWORK,
        facilitator=SyncFakeFacilitator(),
    )
    (route,) = mw.gate.routes
    assert route.policy is None and route.fixed is not None and route.fixed[0].amount == 2000
    with pytest.raises(ConfigurationError, match="smallest unit"):
        PaymentWSGIMiddleware(
            _wsgi_app,
            routes={"GET /a": "$0.0000001"},
            pay_to=PAY_TO,
            network=NETWORK,
            facilitator=SyncFakeFacilitator(),
        )
