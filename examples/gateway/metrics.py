"""Prometheus metrics without a dependency: counters, fixed-bucket histograms, text exposition format 0.0.4.

::

    registry = Registry()
    calls = registry.counter("app_calls_total", "Calls answered.", ("route",))
    calls.inc(route="/v1/chat")
    registry.render()
    # '# HELP app_calls_total Calls answered.\\n# TYPE app_calls_total counter\\napp_calls_total{route="/v1/chat"} 1\\n'

:class:`GatewayMetrics` is the gateway's set, fed one request log line at a time by
:class:`~.requestlog.RequestLog` (the one layer that sees the route, status, trace, payment and
settlement of every request), so handlers need no metrics code. Format reference:
https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds. LLM calls range from tens of milliseconds (a cached refusal) to minutes (a long stream).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

Number = int | float
M = TypeVar("M", bound="_Metric")


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in labelnames:
            # "__" is reserved for Prometheus' internal labels.
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for {name}: {labelnames!r}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        # asyncio runs handlers on one thread, but a scrape may come from another (a threaded server): lock briefly.
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames!r}, got {tuple(labels)!r}")
        try:
            return tuple([str(labels[n]) for n in self.labelnames])
        except KeyError:
            raise ValueError(f"{self.name} takes labels {self.labelnames!r}, got {tuple(labels)!r}") from None

    def _labels(self, key: tuple[str, ...], extra: str = "") -> str:
        pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(self.labelnames, key, strict=True)]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def samples(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(_Metric):
    """A monotonically increasing value per label set. Integer increments stay integers (exact money)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], Number] = {}

    def inc(self, amount: Number = 1, **labels: object) -> None:
        """Add ``amount`` (>= 0) to the series of ``labels``: ``requests.inc(route="/v1/models", status=200)``."""
        if amount < 0 or (isinstance(amount, float) and math.isnan(amount)):
            raise ValueError(f"a counter only goes up; {self.name} got {amount!r}")
        self.add(self._key(labels), amount)

    def add(self, key: tuple[str, ...], amount: Number = 1) -> None:
        """:meth:`inc` for label values already in ``labelnames`` order, as strings (the per-request path)."""
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: object) -> Number:
        """The current value of one series (0 when it was never incremented)."""
        return self._values.get(self._key(labels), 0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._labels(key)} {_number(value)}" for key, value in items]


class Histogram(_Metric):
    """Observations counted into fixed, inclusive upper bounds (``le``), plus their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"{name}: 'le' is reserved for histogram buckets")
        super().__init__(name, help, labelnames)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing and distinct, got {buckets!r}")
        self.buckets = tuple(bounds)
        # label key -> [count per bucket (the last is +Inf), sum, count]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: object) -> None:
        """Record one observation (seconds, for the gateway's latencies)."""
        self.observe_key(self._key(labels), value)

    def observe_key(self, key: tuple[str, ...], value: float) -> None:
        """:meth:`observe` for label values already in ``labelnames`` order, as strings (the per-request path)."""
        if math.isnan(value):
            return  # NaN falls in no bucket and would poison the sum
        index = bisect_left(self.buckets, value)  # first bound >= value: buckets are "less than or equal"
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * (len(self.buckets) + 1), [0.0])
            series[0][index] += 1
            series[1][0] += value

    def snapshot(self, **labels: object) -> tuple[list[int], float, int]:
        """Cumulative bucket counts (``+Inf`` last), sum and count of one series (zeros when never observed)."""
        with self._lock:
            series = self._series.get(self._key(labels))
            counts, total = (list(series[0]), series[1][0]) if series else ([0] * (len(self.buckets) + 1), 0.0)
        cumulative, running = [], 0
        for c in counts:
            running += c
            cumulative.append(running)
        return cumulative, total, running

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        out = []
        bounds = [_number(b) for b in self.buckets] + ["+Inf"]
        for key, (counts, total) in items:
            running = 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                le = 'le="' + bound + '"'
                out.append(f"{self.name}_bucket{self._labels(key, le)} {running}")
            out.append(f"{self.name}_sum{self._labels(key)} {_number(total)}")
            out.append(f"{self.name}_count{self._labels(key)} {running}")
        return out


class Registry:
    """The metrics of one app, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labelnames))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._add(Histogram(name, help, labelnames, buckets))

    def _add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        """The whole exposition text (serve it with ``Content-Type: CONTENT_TYPE``)."""
        return "".join(m.render() for m in self._metrics.values())


_RATE_LIMITED_OUTCOMES = ("429", "rate_limited")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class GatewayMetrics:
    """The gateway's metrics, each derived from a request log line (see :mod:`.requestlog` for its fields).

    Label values are bounded: routes are templates (``/api/health/{check:path}``, ``unmatched`` for a 404),
    methods outside the usual set are ``OTHER``, upstreams are configured endpoint names and payment
    reasons are the payment layer's codes.
    """

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry if registry is not None else Registry()
        self.requests = r.counter(
            "gateway_requests_total",
            "Requests answered, by route template, method and status.",
            ("route", "method", "status"),
        )
        self.duration = r.histogram(
            "gateway_request_duration_seconds",
            "Time from the request to the end of its response body (a whole SSE stream).",
            ("route",),
        )
        self.upstream_latency = r.histogram(
            "gateway_upstream_latency_seconds",
            "Time the serving upstream took to accept a call: its whole response, or for a stream its 2xx and "
            "first chunk.",
            ("upstream", "api"),
        )
        self.upstream_attempts = r.counter(
            "gateway_upstream_attempts_total",
            "Upstream attempts by outcome: ok, an HTTP status, a failure kind, or cooling (skipped after a 429).",
            ("upstream", "outcome"),
        )
        self.upstream_failovers = r.counter(
            "gateway_upstream_failovers_total",
            "Times the pool moved on from this upstream to the next endpoint.",
            ("upstream",),
        )
        self.upstream_rate_limited = r.counter(
            "gateway_upstream_rate_limited_total", "Upstream answers 429 (rate limited).", ("upstream",)
        )
        self.payments_settled = r.counter(
            "gateway_payments_settled_total", "Payments settled (settled events).", ("network",)
        )
        self.payments_failed = r.counter(
            "gateway_payments_failed_total",
            "Payments sent but not settled by the payment layer: refused or rejected (402/400 with the reason) or "
            "the facilitator's verify failed (502 facilitator_error) or the settlement is not confirmed yet (503 "
            "settlement_unconfirmed: the client retries with the same payment and is charged at most once).",
            ("network", "reason"),
        )
        self.payments_recovered = r.counter(
            "gateway_payments_recovered_total",
            "Calls served again on an earlier settlement whose response was lost (same request, no new charge; "
            "needs a settlement journal).",
            ("network",),
        )
        self.usage_settlements = r.counter(
            "gateway_usage_settlements_total",
            "Usage-billed calls (x402 upto) settled at their actual cost (a charge of 0 included: no transaction).",
            ("network",),
        )
        self.usage_charged_atomic = r.counter(
            "gateway_usage_charged_atomic_total",
            "Sum of the actual charges of usage-billed calls, in atomic units (part of the revenue).",
            ("network", "asset"),
        )
        self.usage_maximum_atomic = r.counter(
            "gateway_usage_maximum_atomic_total",
            "Sum of the maxima (the quotes) the callers of usage-billed calls signed, in atomic units.",
            ("network", "asset"),
        )
        self.payments_lost = r.counter(
            "gateway_payments_lost_total",
            "Usage-billed calls served and then not paid: the settlement after the response was refused (e.g. the "
            "payer revoked its Permit2 allowance). The operator's loss; never retried.",
            ("network", "reason"),
        )
        self.lost_atomic = r.counter(
            "gateway_lost_atomic_total",
            "Sum of the charges of lost usage-billed calls, in atomic units.",
            ("network", "asset"),
        )
        self.revenue_atomic = r.counter(
            "gateway_revenue_atomic_total",
            "Sum of settled amounts in the asset's atomic units (USDC: 10^-6 dollars).",
            ("network", "asset"),
        )

    def observe(self, line: Mapping[str, Any]) -> None:
        """Count one finished request from its log line."""
        # Label tuples built here in labelnames order (Counter.add / Histogram.observe_key): no per-call validation.
        route = str(line.get("route") or "unmatched")
        method = line.get("method", "")
        self.requests.add((route, method if method in _METHODS else "OTHER", str(line.get("status"))))
        ms = line.get("ms")
        if isinstance(ms, (int, float)):
            self.duration.observe_key((route,), ms / 1000)
        upstream, upstream_ms = line.get("upstream"), line.get("upstream_ms")
        if upstream and isinstance(upstream_ms, (int, float)):
            self.upstream_latency.observe_key((str(upstream), str(line.get("api") or "unknown")), upstream_ms / 1000)
        attempts = line.get("attempts") or ()
        last = len(attempts) - 1
        for i, attempt in enumerate(attempts):
            endpoint, _, outcome = str(attempt).rpartition(":")
            self.upstream_attempts.add((endpoint, outcome))
            if outcome in _RATE_LIMITED_OUTCOMES:
                self.upstream_rate_limited.add((endpoint,))
            if outcome != "ok" and i < last:
                self.upstream_failovers.add((endpoint,))
        network = line.get("network") or "unknown"
        asset = line.get("asset") or "unknown"
        lost = line.get("lost")
        if isinstance(lost, int):
            self.payments_lost.inc(network=network, reason=line.get("payment_error") or "settlement_failed")
            self.lost_atomic.inc(lost, network=network, asset=asset)
        elif line.get("recovered") is True:
            self.payments_recovered.inc(network=network)
        elif line.get("settled") is True:
            self.payments_settled.inc(network=network)
            paid = line.get("paid")
            if isinstance(paid, int) and paid > 0:
                self.revenue_atomic.inc(paid, network=network, asset=asset)
            if line.get("scheme") == "upto":
                self.usage_settlements.inc(network=network)
                if isinstance(paid, int):
                    self.usage_charged_atomic.inc(paid, network=network, asset=asset)
                if isinstance(line.get("max"), int):
                    self.usage_maximum_atomic.inc(line["max"], network=network, asset=asset)
        elif line.get("payment_error"):
            self.payments_failed.inc(network=network, reason=line["payment_error"])

    def render(self) -> str:
        return self.registry.render()


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "Counter", "GatewayMetrics", "Histogram", "Registry"]
