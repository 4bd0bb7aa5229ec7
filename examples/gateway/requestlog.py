"""One structured log line per request (JSON on the ``examples.gateway`` logger), and the metrics fed from it.

Handlers add what they know to ``scope["gateway.trace"]``: ``api``, ``model``, ``stream``, ``price`` (the
quote, atomic units), ``input_estimate``, ``max_tokens``, ``upstream`` (the endpoint that served),
``upstream_ms``, ``first_chunk_ms``, ``attempts``, ``usage``, ``error``. This layer adds ``method``, ``path``,
``route`` (the template), ``status``, ``client`` and three latencies: ``ms`` (total, to the end of the body),
``start_ms`` (response start) and ``ttfb_ms`` (first body byte).

Payment fields come from the payment layer's lifecycle events (:mod:`x402_middleware.events`), which
:func:`record_payment`, a listener of its :class:`~x402_middleware.PaymentMiddleware`, keeps in the trace:
``payer``, ``network``, ``asset`` from the event's payment; ``tx``, ``settled`` and ``paid`` (the settled
amount) from ``settled``; ``settled: false``, ``tx`` and ``payment_error`` (the facilitator's reason) from
``settle_failed``; ``tx`` when known and ``payment_error: settlement_unconfirmed`` from
``settlement_unknown`` (pending, or its outcome unknown: the client resends the same payment, charged at most
once); ``scheme``, and for ``upto`` (usage billing) ``max`` (the maximum signed; ``paid`` is the actual charge),
``billing``, ``usage_charge`` and ``usage_capped`` (:mod:`.billing`); ``lost`` (the charge), ``settled: false``
and ``payment_error`` from ``lost`` (an ``upto`` settlement refused after the response was served). ``not_settled`` (the app failed or answered a status that is not paid for, or the client left) is no
payment error: such calls are never settled by design. A payment refused before it was verified has no
event; its ``payment_error`` is the ``error`` of the payment layer's 402/400 challenge (``PAYMENT-REQUIRED``),
or ``facilitator_error`` for its 502 (the facilitator's ``verify`` failed). The 503 a payment gets while
another request follows the same payment up is no payment error: nothing was attempted with it here.
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
from x402_middleware.events import (
    LOST,
    RECOVERED,
    SERVED,
    SETTLE_FAILED,
    SETTLED,
    SETTLEMENT_UNKNOWN,
    SETTLING,
    PaymentEvent,
)
from x402_middleware.wire import MAX_HEADER_BYTES, decode_header

from .metrics import GatewayMetrics
from .probe import PAYMENT_HEADERS

logger = logging.getLogger("examples.gateway")
_QUIET = ("/api/health", "/api/v1/health", "/metrics")
_CHALLENGE_HEADER = b"payment-required"
_MAX_REASON = 64
#: ``payment_error`` of a ``settlement_unknown`` event, whatever its reason (``settlement_pending``,
#: ``settlement_unknown``, ``interrupted``): the payment layer answered 503 (or the request was cut short) and
#: the client resends the same payment. One stable label for "the outcome is not known yet".
SETTLEMENT_UNCONFIRMED = "settlement_unconfirmed"
#: ``payment_error`` of the payment layer's 502 to a payment it could not verify (no event: it never got that far).
FACILITATOR_ERROR = "facilitator_error"
#: The trace key :func:`record_payment` keeps a request's payment events under (private: not a log field).
PAYMENT_EVENTS = "_payment_events"
_MAX_RESPONSE_HEADER = 64 * 1024  # PAYMENT-REQUIRED comes from the payment layer, not the client
_ROUTE_CACHE_SIZE = 1024
#: ``json.dumps(line, default=str, separators=(",", ":"))`` without building the encoder per line.
_LINE_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


def record_payment(event: PaymentEvent) -> None:
    """A payment layer listener: keep each payment event in its request's ``scope["gateway.trace"]``.

    ``PaymentMiddleware(app, ..., listeners=[record_payment])``, as :func:`~.paid.payment_layer` composes it;
    :class:`RequestLog` builds the payment fields of the log line (and so the payment metrics) from them.
    """
    scope = event.request
    if scope is not None:
        scope.setdefault("gateway.trace", {}).setdefault(PAYMENT_EVENTS, []).append(event)


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
                status = seen["status"] = message["status"]
                seen["start_ms"] = _ms(started)
                if 400 <= status < 500:  # a challenge is a 402 or 400; what became of a payment comes as events
                    for name, value in message.get("headers", ()):
                        if name.lower() == _CHALLENGE_HEADER:
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
                    # makeRecord + handle is what Logger.log does, less its stack walk for the caller (findCaller): the
                    # record names this module and method (line 0). Handlers, filters and formatters all still apply.
                    record = self.log.makeRecord(
                        self.log.name, level, __file__, 0, _LINE_ENCODER.encode(line), (), None, "RequestLog.__call__"
                    )
                    self.log.handle(record)

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
    events: list[PaymentEvent] | None = trace.get(PAYMENT_EVENTS)
    if events:
        _payment_fields(line, events)
    elif any(name in PAYMENT_HEADERS for name, _ in scope["headers"]):
        # A payment was sent and never verified (no event): the payment layer answered in the app's place. Its
        # challenge (402/400 with PAYMENT-REQUIRED) says why it refused it; its 502, that the facilitator's verify
        # failed. The app never ran, except where nothing was priced (a free model): its 502s set trace["error"].
        if "challenge" in seen:
            challenge = _decode(seen["challenge"])
            line["payment_error"] = _reason(challenge.get("error"), "payment_rejected")
            line["network"] = _claimed_network(scope, challenge)
        elif status == 502 and "error" not in trace:
            line["payment_error"] = FACILITATOR_ERROR
    return line


def _payment_fields(line: dict[str, Any], events: list[PaymentEvent]) -> None:
    """The payment fields from a request's events: who paid on which network, then what became of it."""
    payment = events[0].payment
    requirements = payment.requirements
    line["payer"] = payment.payer
    line["network"] = requirements.network.caip2
    line["asset"] = requirements.asset.address
    line["scheme"] = requirements.scheme
    if requirements.scheme == "upto":
        line["max"] = payment.amount  # the maximum signed; ``paid`` is the actual charge
    # verified, settling, then at most one of the others (and served once the response went out in full)
    outcome = events[-2] if events[-1].kind == SERVED and len(events) > 1 else events[-1]
    if outcome.kind == SETTLED:
        line["tx"] = outcome.transaction or None
        line["settled"] = True
        line["paid"] = outcome.amount
    elif outcome.kind == RECOVERED:  # a lost response served again on its earlier settlement: no new charge
        line["tx"] = outcome.transaction or None
        line["settled"] = True
        line["recovered"] = True
    elif outcome.kind == LOST:  # upto: served, then the settlement was refused: the operator's loss
        line["tx"] = outcome.transaction or None
        line["settled"] = False
        line["lost"] = outcome.amount
        line["payment_error"] = _reason(outcome.reason, "settlement_failed")
    elif outcome.kind == SETTLE_FAILED:
        line["tx"] = outcome.transaction or None
        line["settled"] = False
        line["payment_error"] = _reason(outcome.reason, "settlement_failed")
    elif outcome.kind == SETTLEMENT_UNKNOWN or outcome.kind == SETTLING:  # settling last: the request was cut short
        line["tx"] = outcome.transaction or None  # pending: the transaction sent, not confirmed yet
        line["payment_error"] = SETTLEMENT_UNCONFIRMED


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


def _decode(value: bytes, max_bytes: int = _MAX_RESPONSE_HEADER) -> dict[str, Any]:
    """A base64-JSON x402 header as a dict; ``{}`` when it is unusable (a log line never fails)."""
    try:
        return decode_header(value, name="x402", max_bytes=max_bytes, allow_floats=True)
    except MalformedPaymentError:
        return {}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
