"""GET /metrics and the per-request log line: exact counter/histogram changes for free, failing and paid calls.

Every scrape is parsed by a strict parser of the Prometheus text format 0.0.4 (names, labels and their
escapes, ``# HELP``/``# TYPE`` before samples, histogram ``_bucket``/``_sum``/``_count`` with cumulative
buckets ending at ``+Inf``), so a malformed exposition fails every test, not just one.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from examples.gateway import INFERENCE_PATHS, Gateway, Quote, RateLimit, price_of, x402_price_policy
from examples.gateway.emulator import EmulatorServer
from examples.gateway.metrics import CONTENT_TYPE, Histogram, Registry
from examples.gateway.requestlog import record_payment
from x402_middleware import FacilitatorError, PaymentMiddleware, RouteConfig, SettleResult, VerifyResult, X402Auth
from x402_middleware.client import settlement_of
from x402_middleware.models import PaymentPayload, PaymentRequirements

from .._facilitator_double import FakeFacilitator
from .._payments import PAY_TO, PAYER, PAYER_KEY
from .conftest import client_for, emulator_requests, set_fault

pytestmark = pytest.mark.anyio

NETWORK = "eip155:84532"
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"  # Base Sepolia USDC, the network's default asset
CHAT_ROUTE = "/v1/chat/completions"
FREE = {"model": "nvidia/gemma-4-31b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 32}
PAID = {"model": "openai/gpt-5.2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 64}
TWO = ("a", "b")
SETTLED_TX = "0x" + "5e" * 32
PENDING_TX = "0x" + "9d" * 32


# -- a strict parser of the text exposition format -----------------------------------------------------------------
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)")
_VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|Inf)|NaN")


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse_exposition(text: str) -> Exposition:
    """Parse (and validate) Prometheus text format 0.0.4; any deviation is an AssertionError."""
    assert text.endswith("\n"), "the exposition ends with a line feed"
    out = Exposition()
    helps: set[str] = set()
    seen_families: list[str] = []
    buckets: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = {}
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: no blank lines"
        if line.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE) ({_NAME}) (.*)", line)
            assert m, f"{where}: a comment is '# HELP name text' or '# TYPE name type'"
            kind, name, rest = m.groups()
            if kind == "HELP":
                assert name not in helps, f"{where}: second HELP"
                assert re.fullmatch(r"(?:[^\\]|\\[\\n])*", rest), f"{where}: HELP escapes only \\\\ and \\n"
                helps.add(name)
            else:
                assert name not in out.types, f"{where}: second TYPE"
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), where
                assert name not in seen_families, f"{where}: TYPE after the family's samples"
                out.types[name] = rest
            continue
        m = _SAMPLE.fullmatch(line)
        assert m, f"{where}: a sample is 'name{{labels}} value'"
        name, raw_labels, raw_value = m.groups()
        assert _VALUE.fullmatch(raw_value), f"{where}: bad value"
        value = float(raw_value)
        labels: list[tuple[str, str]] = []
        if raw_labels is not None:
            pos = 0
            while pos < len(raw_labels):
                lm = _LABEL.match(raw_labels, pos)
                assert lm, f"{where}: bad label at {raw_labels[pos:]!r}"
                labels.append((lm.group(1), _unescape(lm.group(2))))
                pos = lm.end()
                if pos < len(raw_labels):
                    assert raw_labels[pos] == ",", f"{where}: labels are comma-separated"
                    pos += 1
            assert len({k for k, _ in labels}) == len(labels), f"{where}: repeated label"
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and out.types.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        assert family in out.types, f"{where}: sample before its # TYPE"
        if not seen_families or seen_families[-1] != family:
            assert family not in seen_families, f"{where}: the family's samples are not contiguous"
            seen_families.append(family)
        if out.types[family] == "counter":
            assert name.endswith("_total") and value >= 0, where
            assert "." not in raw_value or not name.startswith("gateway_revenue"), f"{where}: money is integer"
        label_set = frozenset(labels)
        if out.types[family] == "histogram":
            assert name != family, f"{where}: a histogram has only _bucket, _sum and _count samples"
            if name.endswith("_bucket"):
                le = dict(labels).get("le")
                assert le is not None, f"{where}: a bucket has an le label"
                buckets.setdefault((family, frozenset(x for x in labels if x[0] != "le")), []).append(
                    (float(le), value)
                )
            else:
                assert "le" not in dict(labels), where
        key = (name, label_set)
        assert key not in out.samples, f"{where}: duplicate series"
        out.samples[key] = value
    for (family, others), pairs in buckets.items():
        bounds = [b for b, _ in pairs]
        counts = [c for _, c in pairs]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), f"{family}: le increasing"
        assert bounds[-1] == math.inf, f"{family}: the last bucket is +Inf"
        assert counts == sorted(counts), f"{family}{dict(others)}: buckets are cumulative"
        assert out.samples[(family + "_count", others)] == counts[-1], f"{family}: +Inf bucket == _count"
        assert (family + "_sum", others) in out.samples, f"{family}: _sum present"
    return out


async def scrape(c: httpx.AsyncClient) -> Exposition:
    r = await c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(r.text)


def _delta(after: Exposition, before: Exposition) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every series that changed, except the scrapes themselves and the (timing-dependent) histogram internals."""
    changed = {}
    for key in set(after.samples) | set(before.samples):
        name, labels = key
        if ("route", "/metrics") in labels or name.endswith(("_bucket", "_sum")):
            continue
        d = after.samples.get(key, 0.0) - before.samples.get(key, 0.0)
        if d:
            changed[key] = d
    return changed


def series(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def requests(route: str, status: int, method: str = "POST") -> tuple[str, frozenset[tuple[str, str]]]:
    return series("gateway_requests_total", route=route, method=method, status=str(status))


def duration(route: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return series("gateway_request_duration_seconds_count", route=route)


def upstream_latency(upstream: str, api: str = "chat") -> tuple[str, frozenset[tuple[str, str]]]:
    return series("gateway_upstream_latency_seconds_count", upstream=upstream, api=api)


def attempts(upstream: str, outcome: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return series("gateway_upstream_attempts_total", upstream=upstream, outcome=outcome)


# -- the module itself -------------------------------------------------------------------------------------------
def test_exposition_escapes_labels_and_help_and_keeps_integers() -> None:
    registry = Registry()
    counter = registry.counter("x_total", 'Help with a \\ backslash\nand a "quote".', ("v",))
    awkward = 'a "quoted" \\ back\nslash'
    counter.inc(v=awkward)
    counter.inc(10**30, v="big")  # atomic money: integers stay exact
    parsed = parse_exposition(registry.render())
    assert parsed.value("x_total", v=awkward) == 1
    assert 'x_total{v="big"} 1000000000000000000000000000000\n' in registry.render()
    assert '# HELP x_total Help with a \\\\ backslash\\nand a "quote".\n' in registry.render()
    with pytest.raises(ValueError):
        counter.inc(-1, v="x")
    with pytest.raises(ValueError):
        counter.inc(w="x")
    for bad in ("1abc", "a-b", "a b"):
        with pytest.raises(ValueError):
            registry.counter(bad, "bad")
    with pytest.raises(ValueError):
        registry.counter("y_total", "reserved label", ("__name",))
    with pytest.raises(ValueError):
        registry.counter("x_total", "twice")
    with pytest.raises(ValueError):
        registry.histogram("h_seconds", "le is reserved", ("le",))


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    registry = Registry()
    h: Histogram = registry.histogram("h_seconds", "h", ("r",), buckets=(0.1, 1, 10))
    for value in (0.05, 0.1, 0.5, 1, 99, float("nan")):  # NaN is ignored
        h.observe(value, r="x")
    cumulative, total, count = h.snapshot(r="x")
    assert (cumulative, count) == ([2, 4, 4, 5], 5) and total == pytest.approx(100.65)
    parsed = parse_exposition(registry.render())
    assert [parsed.value("h_seconds_bucket", r="x", le=le) for le in ("0.1", "1.0", "10.0", "+Inf")] == [2, 4, 4, 5]
    assert parsed.value("h_seconds_count", r="x") == 5
    assert parsed.value("h_seconds_sum", r="x") == pytest.approx(100.65)
    with pytest.raises(ValueError):
        registry.histogram("g_seconds", "unsorted", buckets=(1, 0.5))


@pytest.mark.parametrize(
    "broken",
    [
        "x_total 1\n",  # no TYPE
        '# TYPE x_total counter\nx_total{a="b} 1\n',  # unterminated label
        '# TYPE x_total counter\nx_total{a="\\t"} 1\n',  # unknown escape
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',  # not cumulative
        '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',  # no +Inf
        "# TYPE x_total counter\nx_total 1\nx_total 2\n",  # duplicate series
        "# TYPE x_total counter\nx_total 1",  # no final line feed
    ],
)
def test_the_parser_is_strict(broken: str) -> None:
    with pytest.raises(AssertionError):
        parse_exposition(broken)


# -- through the app -------------------------------------------------------------------------------------------
@pytest.fixture
async def two(make_app: Callable[..., Starlette]) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose pools have two emulator endpoints, ``a`` then ``b``."""
    app = make_app(TWO)
    async with client_for(app) as c:
        yield c
    await app.state.gateway.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_free_call(two: httpx.AsyncClient, emulator: EmulatorServer, stream: bool) -> None:
    before = await scrape(two)
    r = await two.post(CHAT_ROUTE, json={**FREE, "stream": stream})
    assert r.status_code == 200
    after = await scrape(two)
    assert _delta(after, before) == {
        requests(CHAT_ROUTE, 200): 1,
        duration(CHAT_ROUTE): 1,
        upstream_latency("a"): 1,
        attempts("a", "ok"): 1,
    }
    assert after.value("gateway_upstream_latency_seconds_sum", upstream="a", api="chat") > 0
    # The scrape in between counted itself once, under its own route; nothing called an upstream for it.
    assert after.value("gateway_requests_total", route="/metrics", method="GET", status="200") == 1
    assert emulator_requests(emulator) == 1


async def test_upstream_5xx_fails_over(two: httpx.AsyncClient, emulator: EmulatorServer) -> None:
    set_fault(emulator, "500", endpoint="a")
    before = await scrape(two)
    r = await two.post(CHAT_ROUTE, json=FREE)
    assert r.status_code == 200 and r.headers["x-gateway-upstream"] == "b"
    assert _delta(await scrape(two), before) == {
        requests(CHAT_ROUTE, 200): 1,
        duration(CHAT_ROUTE): 1,
        upstream_latency("b"): 1,
        attempts("a", "500"): 1,
        attempts("b", "ok"): 1,
        series("gateway_upstream_failovers_total", upstream="a"): 1,
    }

    set_fault(emulator, "503", endpoint="b")
    before = await scrape(two)
    r = await two.post("/v1/messages", json={**FREE, "max_tokens": 10})
    assert r.status_code == 502
    assert _delta(await scrape(two), before) == {
        requests("/v1/messages", 502): 1,
        duration("/v1/messages"): 1,  # no upstream latency: nobody served it
        attempts("a", "500"): 1,
        attempts("b", "503"): 1,
        series("gateway_upstream_failovers_total", upstream="a"): 1,
    }


async def test_upstream_429s(two: httpx.AsyncClient, emulator: EmulatorServer) -> None:
    set_fault(emulator, "429", endpoint="a", retry_after=30)
    set_fault(emulator, "429", endpoint="b", retry_after=30)
    before = await scrape(two)
    r = await two.post(CHAT_ROUTE, json=FREE)
    assert r.status_code == 429
    assert _delta(await scrape(two), before) == {
        requests(CHAT_ROUTE, 429): 1,
        duration(CHAT_ROUTE): 1,
        attempts("a", "429"): 1,
        attempts("b", "429"): 1,
        series("gateway_upstream_failovers_total", upstream="a"): 1,
        series("gateway_upstream_rate_limited_total", upstream="a"): 1,
        series("gateway_upstream_rate_limited_total", upstream="b"): 1,
    }
    # Now known throttled: the probe answers 429 with no upstream attempt at all.
    before = await scrape(two)
    assert (await two.post(CHAT_ROUTE, json=FREE)).status_code == 429
    assert _delta(await scrape(two), before) == {requests(CHAT_ROUTE, 429): 1, duration(CHAT_ROUTE): 1}
    assert emulator_requests(emulator) == 2


async def test_routes_are_templates_and_metrics_is_exempt(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    app = make_app(catalog_rate_limit=RateLimit(1, 3600), health_rate_limit=RateLimit(1, 60))
    async with client_for(app) as c:
        for check in ("live", "pools", "ready"):
            await c.get(f"/api/health/{check}")
        await c.get("/no/such/path")
        await c.delete("/v1/models")
        for _ in range(5):  # far over both per-IP limits, never rate-limited
            parsed = await scrape(c)
    health = "/api/health/{check:path}"
    assert parsed.value("gateway_requests_total", route=health, method="GET", status="200") == 1
    assert parsed.value("gateway_requests_total", route=health, method="GET", status="429") == 2
    assert parsed.value("gateway_requests_total", route="unmatched", method="GET", status="404") == 1
    assert parsed.value("gateway_requests_total", route="/v1/models", method="DELETE", status="405") == 1
    assert parsed.value("gateway_requests_total", route="/metrics", method="GET", status="200") == 4
    assert not [k for k in parsed.samples if any(v.startswith("/api/health/") and v != health for _, v in k[1])]
    assert emulator_requests(emulator) == 0  # neither /metrics nor health called an upstream


async def test_metrics_can_be_turned_off(make_app: Callable[..., Starlette]) -> None:
    app = make_app(metrics=False)
    assert app.state.metrics is None
    async with client_for(app) as c:
        assert (await c.get("/metrics")).status_code == 404


# -- paid calls: PaymentMiddleware + the in-process facilitator double + X402Auth ---------------------------------
def paid_wrap(
    facilitator: FakeFacilitator, *, check_funds: bool = False, outer: Callable[[ASGIApp], ASGIApp] | None = None
) -> Callable[[ASGIApp, Gateway], ASGIApp]:
    """The payment layer as ``paid.payment_layer`` composes it for the log: its events go to ``record_payment``."""

    def wrap(app: ASGIApp, gateway: Gateway) -> ASGIApp:
        policy = x402_price_policy(gateway)
        routes = {
            f"POST {p}": RouteConfig(price=policy, price_body=True, description="AI API call") for p in INFERENCE_PATHS
        }
        paid = PaymentMiddleware(
            app,
            routes=routes,
            pay_to=PAY_TO,
            network=NETWORK,
            facilitator=facilitator,
            check_funds=check_funds,
            listeners=[record_payment],
        )
        return paid if outer is None else outer(paid)

    return wrap


def without_x402_headers(app: ASGIApp) -> ASGIApp:
    """Pure ASGI: drop the payment layer's headers from its answers to paid attempts (the first 402 keeps its
    challenge, for the client to pay), so the log line of a paid attempt can only learn from its events."""
    drop = {b"payment-response", b"x-payment-response", b"payment-required"}

    async def strip(scope: Any, receive: Any, send: Any) -> None:
        if not any(k == b"payment-signature" for k, _ in scope["headers"]):
            await app(scope, receive, send)
            return

        async def send_stripped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message["headers"] if k.lower() not in drop]}
            await send(message)

        await app(scope, receive, send_stripped)

    return strip


def paying_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 12345)),
        base_url="http://gateway.test",
        auth=X402Auth(PAYER_KEY, settlement_retries=0),  # one request per payment: each is counted here
    )


def _amount(quote: Quote | None) -> int:
    assert quote is not None and isinstance(quote.amount, int)
    return quote.amount


def log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "examples.gateway"]


async def test_paid_calls_count_settlements_and_exact_revenue(
    make_app: Callable[..., Starlette], caplog: pytest.LogCaptureFixture
) -> None:
    facilitator = FakeFacilitator()
    app = make_app(TWO, wrap=paid_wrap(facilitator))
    gateway: Gateway = app.state.gateway
    bodies = [PAID, {**PAID, "max_tokens": 5000, "stream": True}]
    quotes = [_amount(price_of(gateway, CHAT_ROUTE, b)) for b in bodies]
    assert all(q > 0 for q in quotes) and quotes[0] != quotes[1]
    async with paying_client(app) as c:
        before = await scrape(c)  # no payment needed for /metrics, even behind the payment layer
        caplog.set_level(logging.INFO, logger="examples.gateway")
        responses = [await c.post(CHAT_ROUTE, json=b) for b in bodies]
        caplog.set_level(logging.WARNING, logger="examples.gateway")
        after = await scrape(c)
    assert [r.status_code for r in responses] == [200, 200]
    assert _delta(after, before) == {
        requests(CHAT_ROUTE, 402): 2,
        requests(CHAT_ROUTE, 200): 2,
        duration(CHAT_ROUTE): 4,
        upstream_latency("a"): 2,
        attempts("a", "ok"): 2,
        series("gateway_payments_settled_total", network=NETWORK): 2,
        series("gateway_revenue_atomic_total", network=NETWORK, asset=USDC): quotes[0] + quotes[1],
    }

    # The log line of each paid call: model, price, payer, tx, upstream, latencies, status.
    paid = [line for line in log_lines(caplog) if line["status"] == 200]
    assert len(paid) == 2
    for line, body, quote, response in zip(paid, bodies, quotes, responses, strict=True):
        assert line["model"] == body["model"] and line["price"] == quote and line["paid"] == quote
        assert line["payer"] == PAYER and line["settled"] is True and line["network"] == NETWORK
        settlement = settlement_of(response)
        assert settlement is not None and line["asset"] == USDC and line["tx"] == settlement.transaction
        assert line["upstream"] == "a" and line["route"] == CHAT_ROUTE and line["path"] == CHAT_ROUTE
        assert 0 < line["upstream_ms"] <= line["start_ms"] <= line["ttfb_ms"] <= line["ms"]
        assert "payment_error" not in line
    assert paid[1]["stream"] is True and paid[1]["first_chunk_ms"] <= paid[1]["start_ms"]
    challenges = [line for line in log_lines(caplog) if line["status"] == 402]
    assert len(challenges) == 2 and all("payment_error" not in line and "payer" not in line for line in challenges)


@pytest.mark.parametrize(
    ("facilitator", "status", "reason"),
    [
        (
            FakeFacilitator(settle_result=SettleResult(False, NETWORK, error_reason="insufficient_funds")),
            402,
            "insufficient_funds",
        ),
        (FakeFacilitator(raise_on_settle=True), 503, "settlement_unconfirmed"),
        (
            FakeFacilitator(settle_result=SettleResult(False, NETWORK, PENDING_TX, PAYER, "settlement_pending")),
            503,
            "settlement_unconfirmed",
        ),
    ],
    ids=["refused", "facilitator-down", "pending"],
)
async def test_settle_failure_counts_a_failed_payment(
    make_app: Callable[..., Starlette],
    facilitator: FakeFacilitator,
    status: int,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(TWO, wrap=paid_wrap(facilitator))
    async with paying_client(app) as c:
        before = await scrape(c)
        caplog.set_level(logging.INFO, logger="examples.gateway")
        r = await c.post(CHAT_ROUTE, json=PAID)
        caplog.set_level(logging.WARNING, logger="examples.gateway")
        after = await scrape(c)
    assert r.status_code == status
    assert _delta(after, before) == {
        requests(CHAT_ROUTE, 402): 1 + (status == 402),
        **({requests(CHAT_ROUTE, status): 1} if status != 402 else {}),
        duration(CHAT_ROUTE): 2,
        upstream_latency("a"): 1,
        attempts("a", "ok"): 1,  # the app did serve it
        series("gateway_payments_failed_total", network=NETWORK, reason=reason): 1,
    }
    line = log_lines(caplog)[-1]
    assert line["payment_error"] == reason and line["payer"] == PAYER and line.get("settled") is not True


@pytest.mark.parametrize(
    ("settle", "status", "outcome", "counted"),
    [
        (
            SettleResult(True, NETWORK, SETTLED_TX, PAYER),
            200,
            {"settled": True, "tx": SETTLED_TX, "paid": "quote"},
            {series("gateway_payments_settled_total", network=NETWORK): 1},
        ),
        (
            SettleResult(False, NETWORK, error_reason="insufficient_funds"),
            402,
            {"settled": False, "tx": None, "payment_error": "insufficient_funds"},
            {series("gateway_payments_failed_total", network=NETWORK, reason="insufficient_funds"): 1},
        ),
        (
            SettleResult(False, NETWORK, PENDING_TX, PAYER, "settlement_pending"),
            503,
            {"tx": PENDING_TX, "payment_error": "settlement_unconfirmed"},
            {series("gateway_payments_failed_total", network=NETWORK, reason="settlement_unconfirmed"): 1},
        ),
    ],
    ids=["settled", "refused", "pending"],
)
async def test_the_payment_fields_come_from_the_lifecycle_events(
    make_app: Callable[..., Starlette],
    caplog: pytest.LogCaptureFixture,
    settle: SettleResult,
    status: int,
    outcome: dict[str, Any],
    counted: dict[tuple[str, frozenset[tuple[str, str]]], float],
) -> None:
    # The paid attempt's answer reaches the request log without PAYMENT-RESPONSE or PAYMENT-REQUIRED: nothing to
    # decode, so the line and the metrics can only come from the events given to record_payment.
    app = make_app(TWO, wrap=paid_wrap(FakeFacilitator(settle_result=settle), outer=without_x402_headers))
    quote = _amount(price_of(app.state.gateway, CHAT_ROUTE, PAID))
    async with paying_client(app) as c:
        before = await scrape(c)
        caplog.set_level(logging.INFO, logger="examples.gateway")
        r = await c.post(CHAT_ROUTE, json=PAID)
        caplog.set_level(logging.WARNING, logger="examples.gateway")
        after = await scrape(c)
    assert r.status_code == status and r.request.headers.get("payment-signature")
    assert not {"payment-response", "payment-required"} & set(r.headers)
    line = log_lines(caplog)[-1]
    fields = ("payer", "network", "asset", "paid", "tx", "settled", "payment_error")
    expected = {"payer": PAYER, "network": NETWORK, "asset": USDC, **outcome}
    if expected.get("paid") == "quote":
        expected["paid"] = quote
    assert {k: line[k] for k in fields if k in line} == expected
    assert line["status"] == status and line["upstream"] == "a"  # the app served it before settlement
    payments = {k: v for k, v in _delta(after, before).items() if k[0].startswith(("gateway_payments", "gateway_rev"))}
    revenue = {series("gateway_revenue_atomic_total", network=NETWORK, asset=USDC): quote} if status == 200 else {}
    assert payments == {**counted, **revenue}


class VerifyDown(FakeFacilitator):
    """The facilitator's verify is unreachable: with check_funds the payment layer answers 502 before any event."""

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResult:
        raise FacilitatorError("facilitator unreachable (test double)")


async def test_a_payment_refused_before_verification_is_told_by_its_answer(
    make_app: Callable[..., Starlette], emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(TWO, wrap=paid_wrap(VerifyDown(), check_funds=True))
    async with paying_client(app) as c:
        before = await scrape(c)
        caplog.set_level(logging.INFO, logger="examples.gateway")
        r = await c.post(CHAT_ROUTE, json=PAID)
        caplog.set_level(logging.WARNING, logger="examples.gateway")
        after = await scrape(c)
    assert r.status_code == 502 and r.json()["error"] == "facilitator_error"
    assert _delta(after, before) == {
        requests(CHAT_ROUTE, 402): 1,
        requests(CHAT_ROUTE, 502): 1,
        duration(CHAT_ROUTE): 2,
        series("gateway_payments_failed_total", network="unknown", reason="facilitator_error"): 1,
    }
    line = log_lines(caplog)[-1]
    assert line["payment_error"] == "facilitator_error" and "payer" not in line and "settled" not in line
    assert emulator_requests(emulator) == 0  # never verified: the app did not run


async def test_rejected_payment_and_unsettled_app_failure(
    make_app: Callable[..., Starlette], emulator: EmulatorServer
) -> None:
    app = make_app(TWO, wrap=paid_wrap(FakeFacilitator()))
    async with paying_client(app) as c:
        r = await c.post(CHAT_ROUTE, json=PAID)
        assert r.status_code == 200
        signature = r.request.headers["payment-signature"]
        # Replaying a settled payment: the payment layer's 402 names the reason; the network is the one offered.
        before = await scrape(c)
        replay = await c.post(CHAT_ROUTE, json=PAID, headers={"PAYMENT-SIGNATURE": signature})
        assert replay.status_code == 402
        assert _delta(await scrape(c), before) == {
            requests(CHAT_ROUTE, 402): 1,
            duration(CHAT_ROUTE): 1,
            series("gateway_payments_failed_total", network=NETWORK, reason="invalid_exact_evm_nonce_already_used"): 1,
        }
        # A paid call the upstreams fail is answered 502 by the app and never settled: not a payment failure.
        set_fault(emulator, "500")
        before = await scrape(c)
        failed = await c.post(CHAT_ROUTE, json=PAID)
        assert failed.status_code == 502
        assert _delta(await scrape(c), before) == {
            requests(CHAT_ROUTE, 402): 1,
            requests(CHAT_ROUTE, 502): 1,
            duration(CHAT_ROUTE): 2,
            attempts("a", "500"): 1,
            attempts("b", "500"): 1,
            series("gateway_upstream_failovers_total", upstream="a"): 1,
        }


async def test_log_line_of_a_free_stream(two: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="examples.gateway")
    r = await two.post(CHAT_ROUTE, json={**FREE, "stream": True})
    await two.get("/metrics")
    assert r.status_code == 200
    line, scrape_line = log_lines(caplog)
    assert line["model"] == FREE["model"] and line["price"] is None and line["upstream"] == "a"
    assert line["status"] == 200 and line["route"] == CHAT_ROUTE and line["attempts"] == ["a:ok"]
    assert 0 < line["upstream_ms"] <= line["first_chunk_ms"] <= line["start_ms"] <= line["ttfb_ms"] <= line["ms"]
    assert line["usage"]["completion_tokens"] > 0 and "payer" not in line and "tx" not in line
    levels = [rec.levelno for rec in caplog.records if rec.name == "examples.gateway"]
    assert scrape_line["route"] == "/metrics" and levels == [logging.INFO, logging.DEBUG]  # scrapes log quietly
