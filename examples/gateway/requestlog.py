"""One structured log line per request (JSON on the ``examples.gateway`` logger).

Handlers add what they know to ``scope["gateway.trace"]`` (model, price, upstream,
attempts, latencies, usage). Payment fields come from the payment layer when it
is composed: the verified payment in ``scope["x402.payment"]`` (payer, amount,
network) and the transaction from the ``PAYMENT-RESPONSE`` header it adds.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("examples.gateway")
_QUIET = ("/api/health", "/api/v1/health")


class RequestLog:
    """Pure ASGI, outermost: times the request, watches the response start, logs when the body is done."""

    def __init__(self, app: ASGIApp, log: logging.Logger = logger) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan passes through
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        trace: dict[str, Any] = scope.setdefault("gateway.trace", {})
        seen: dict[str, Any] = {}

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["start_ms"] = _ms(started)
                for name, value in message.get("headers", ()):
                    if name.lower() in (b"payment-response", b"x-payment-response"):
                        seen["settlement"] = value
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            level = logging.DEBUG if scope["path"].startswith(_QUIET) else logging.INFO
            if self.log.isEnabledFor(level):
                self.log.log(level, "%s", json.dumps(_line(scope, trace, seen, _ms(started)), default=str,
                                                     separators=(",", ":")))


def _line(scope: Scope, trace: dict[str, Any], seen: dict[str, Any], total_ms: float) -> dict[str, Any]:
    line: dict[str, Any] = {"event": "request", "method": scope["method"], "path": scope["path"],
                            "status": seen.get("status", 500), "ms": total_ms, "start_ms": seen.get("start_ms")}
    if scope.get("client"):
        line["client"] = scope["client"][0]
    line.update({k: v for k, v in trace.items() if not k.startswith("_")})
    payment = scope.get("x402.payment")
    if payment is not None:
        line["payer"] = getattr(payment, "payer", None)
        line["paid"] = getattr(payment, "amount", None)
        network = getattr(payment, "network", None)
        line["network"] = getattr(network, "caip2", None) or getattr(network, "name", None) or network
    if "settlement" in seen:
        settlement = _decode(seen["settlement"])
        line["tx"] = settlement.get("transaction")
        line["settled"] = settlement.get("success")
    return line


def _decode(value: bytes) -> dict[str, Any]:
    try:
        data = json.loads(base64.b64decode(value))
    except (binascii.Error, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
