"""One structured log line per request (JSON on the ``examples.gateway`` logger), and the metrics fed from it.

Handlers add what they know to ``scope["gateway.trace"]``: ``api``, ``model``, ``stream``, ``price`` (the
quote, atomic units), ``input_estimate``, ``max_tokens``, ``upstream`` (the endpoint that served),
``upstream_ms``, ``first_chunk_ms``, ``attempts``, ``usage``, ``error``. This layer adds ``method``, ``path``,
``route`` (the template), ``status``, ``client`` and three latencies: ``ms`` (total, to the end of the body),
``start_ms`` (response start) and ``ttfb_ms`` (first body byte). Payment fields come from the payment layer
when it is composed: ``payer``, ``paid``, ``network``, ``asset`` from the verified payment in
``scope["x402.payment"]``; ``tx`` and ``settled`` from the ``PAYMENT-RESPONSE`` (v1 ``X-PAYMENT-RESPONSE``)
header it adds; ``payment_error`` when a payment was sent but not settled (the reason of its 402/400, or
``facilitator_error`` for its 502, ``settlement_unconfirmed`` for its 503: pending or unknown, to be retried).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from x402_middleware import MalformedPaymentError
from x402_middleware.wire import MAX_HEADER_BYTES, decode_header

from .metrics import GatewayMetrics
from .probe import PAYMENT_HEADERS

logger = logging.getLogger("examples.gateway")
_QUIET = ("/api/health", "/api/v1/health", "/metrics")
_SETTLEMENT_HEADERS = (b"payment-response", b"x-payment-response")
_CHALLENGE_HEADER = b"payment-required"
_MAX_REASON = 64
#: ``payment_error`` of the payment layer's 503 (settlement pending or its outcome unknown; the client retries).
SETTLEMENT_UNCONFIRMED = "settlement_unconfirmed"
_MAX_RESPONSE_HEADER = 64 * 1024  # PAYMENT-RESPONSE / PAYMENT-REQUIRED come from the payment layer, not the client
_ROUTE_CACHE_SIZE = 1024
#: ``json.dumps(line, default=str, separators=(",", ":"))`` without building the encoder per line.
_LINE_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


class RequestLog:
    """Pure ASGI, outermost: times the request, watches the response, logs (and counts) when the body is done.

    ``routes`` (the app's routes) turn paths into route templates for the ``route`` field and metric label.
    """

    def __init__(
        self,
        app: ASGIApp,
        log: logging.Logger = logger,
        *,
        metrics: GatewayMetrics | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.log = log
        self.metrics = metrics
        self.routes = tuple(routes)
        self._templates: dict[str, str | None] = {}  # path -> template; bounded, paths under a {path} are open-ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan passes through
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self._route(scope)  # before the app runs: routing may rewrite scope (root_path under a Mount)
        trace: dict[str, Any] = scope.setdefault("gateway.trace", {})
        seen: dict[str, Any] = {}

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["start_ms"] = _ms(started)
                for name, value in message.get("headers", ()):
                    name = name.lower()
                    if name in _SETTLEMENT_HEADERS:
                        seen["settlement"] = value
                    elif name == _CHALLENGE_HEADER:
                        seen["challenge"] = value
            elif message["type"] == "http.response.body" and "ttfb_ms" not in seen and message.get("body"):
                seen["ttfb_ms"] = _ms(started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            level = logging.DEBUG if scope["path"].startswith(_QUIET) else logging.INFO
            logging_on = self.log.isEnabledFor(level)
            if logging_on or self.metrics is not None:
                line = _line(scope, trace, seen, _ms(started), route)
                if self.metrics is not None:
                    self.metrics.observe(line)
                if logging_on:
                    self.log.log(level, "%s", _LINE_ENCODER.encode(line))

    def _route(self, scope: Scope) -> str | None:
        path = scope["path"]
        if path in self._templates:
            return self._templates[path]
        template = partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = getattr(route, "path", None)
                break
            if match == Match.PARTIAL and partial is None:  # the path matched, the method did not (405)
                partial = getattr(route, "path", None)
        template = template or partial
        if len(self._templates) < _ROUTE_CACHE_SIZE:
            self._templates[path] = template
        return template


def _line(
    scope: Scope, trace: dict[str, Any], seen: dict[str, Any], total_ms: float, route: str | None
) -> dict[str, Any]:
    status = seen.get("status", 500)
    line: dict[str, Any] = {
        "event": "request",
        "method": scope["method"],
        "path": scope["path"],
        "route": route,
        "status": status,
        "ms": total_ms,
        "start_ms": seen.get("start_ms"),
        "ttfb_ms": seen.get("ttfb_ms"),
    }
    if scope.get("client"):
        line["client"] = scope["client"][0]
    line.update({k: v for k, v in trace.items() if not k.startswith("_")})
    payment = scope.get("x402.payment")
    if payment is not None:
        line["payer"] = getattr(payment, "payer", None)
        line["paid"] = getattr(payment, "amount", None)
        network = getattr(payment, "network", None)
        line["network"] = getattr(network, "caip2", None) or getattr(network, "name", None) or network
        line["asset"] = getattr(getattr(payment, "asset", None), "address", None)
    if "settlement" in seen:
        settlement = _decode(seen["settlement"])
        line["tx"] = settlement.get("transaction") or None
        line["settled"] = settlement.get("success") is True
        if not line["settled"]:
            line["payment_error"] = _reason(settlement.get("errorReason"), "settlement_failed")
            line.setdefault("network", _text(settlement.get("network")))
    elif any(name in PAYMENT_HEADERS for name, _ in scope["headers"]):
        # A payment was sent and nothing was settled. The payment layer's own answers tell it apart from the
        # app's errors (which are never settled by design): a challenge (402/400 with PAYMENT-REQUIRED) says
        # why the payment was refused; its 502 means the facilitator failed, its 503 that a settlement's outcome is
        # not known yet (the client retries with the same payment). The app's 502s and 503s set trace["error"].
        if "challenge" in seen:
            challenge = _decode(seen["challenge"])
            line["payment_error"] = _reason(challenge.get("error"), "payment_rejected")
            if "network" not in line:
                line["network"] = _claimed_network(scope, challenge)
        elif status == 502 and "error" not in trace:
            line["payment_error"] = "facilitator_error"
        elif status == 503 and "error" not in trace:
            line["payment_error"] = SETTLEMENT_UNCONFIRMED
    return line


def _claimed_network(scope: Scope, challenge: dict[str, Any]) -> str | None:
    """The network a rejected payment was for, only if the server offered it (a client's string is no label)."""
    header = next((v for k, v in scope["headers"] if k in PAYMENT_HEADERS), b"")
    payload = _decode(header, MAX_HEADER_BYTES)  # the payment layer refuses larger ones too
    accepted = payload.get("accepted")
    claimed = accepted.get("network") if isinstance(accepted, dict) else payload.get("network")
    offered = {a.get("network") for a in challenge.get("accepts") or () if isinstance(a, dict)}
    return claimed if isinstance(claimed, str) and claimed in offered else None


def _reason(value: Any, default: str) -> str:
    return value[:_MAX_REASON] if isinstance(value, str) and value else default


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _decode(value: bytes, max_bytes: int = _MAX_RESPONSE_HEADER) -> dict[str, Any]:
    """A base64-JSON x402 header as a dict; ``{}`` when it is unusable (a log line never fails)."""
    try:
        return decode_header(value, name="x402", max_bytes=max_bytes, allow_floats=True)
    except MalformedPaymentError:
        return {}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
