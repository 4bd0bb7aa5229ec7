"""``PaymentMiddleware``: x402 payments for any ASGI app (Starlette, FastAPI, Django ASGI, ...).

Flow of a paid route (``../shared/docs/x402-protocol.md`` §2, §6.3-6.4):

1. no payment header -> 402 with ``PAYMENT-REQUIRED`` (v2) and a v1 JSON body;
2. payment -> matched against the route's current requirements and verified
   locally (EIP-712 digest + ecrecover, no facilitator round trip), then
   reserved so it is served at most once;
3. the app runs with the payment in ``scope["x402.payment"]``;
4. when the app starts a 2xx response, the payment is settled *before* that
   start message is forwarded; the body then streams untouched (SSE stays SSE).
   Any other status, an exception, or a HEAD request is never settled. A failed
   settlement replaces the response with a 402 and drops the app's body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from ._config import MAX_PRICING_BODY, build_config
from ._disconnect import ClientWatch, has_body
from ._exceptions import ConfigurationError, PricingBodyTooLargeError, PricingError, UnpriceableRequestError
from ._flow import (
    PaidFlow,
    SettleWhen,
    parse_json_body,
    pricing_failure,
    private_cache_control,
    run_async,
    settle_on_2xx,
)
from ._gate import Answer, Gate, PaidRoute
from ._types import ASGIApp, Message, Receive, Scope, Send
from .events import Listener
from .facilitator import Facilitator
from .models import PaymentRequirements, ResourceInfo
from .pricing import PaymentRequest
from .stores import PaymentStore

__all__ = ["MAX_PRICING_BODY", "MAX_PRICING_READS", "PaymentMiddleware", "settle_on_2xx"]

# A ``price_body`` route answers 413 to a body over MAX_PRICING_BODY (``max_pricing_body=``), refused by its
# ``Content-Length`` before any byte is read, or as soon as a body without one passes the cap.

#: Bodies read for pricing at once (``max_pricing_reads=``), so that unpaid uploads hold at most
#: ``MAX_PRICING_READS * max_pricing_body`` bytes. Further requests wait for a turn, up to
#: :data:`PRICING_READ_WAIT` seconds, then get 503 ``pricing_busy`` with ``Retry-After``.
MAX_PRICING_READS = 32

#: Seconds a request waits for a pricing read slot before its 503: a burst queues, a sustained flood of slow uploads
#: holding every slot is answered rather than piling up waiting requests.
PRICING_READ_WAIT = 10.0


class PaymentMiddleware:
    """Gate routes of an ASGI app behind x402 payments.

    Example (Starlette)::

        app = Starlette(routes=[...])
        app = PaymentMiddleware(
            app,
            routes={"GET /weather": "$0.001", "POST /v1/chat": RouteConfig(price=quote, price_body=True)},
            pay_to="0xYourAddress",
            network="eip155:8453",
            facilitator=HTTPFacilitator("https://x402.org/facilitator"),
        )

    Or ``app.add_middleware(PaymentMiddleware, routes=..., pay_to=..., facilitator=...)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        *,
        routes: Mapping[str, Any],
        facilitator: Facilitator,
        pay_to: str | None = None,
        network: str | Sequence[str] = "eip155:8453",
        store: PaymentStore | None = None,
        max_timeout_seconds: int = 300,
        resource_url: str | None = None,
        settle_when: SettleWhen = settle_on_2xx,
        max_pricing_body: int = MAX_PRICING_BODY,
        check_funds: bool = False,
        max_pricing_reads: int = MAX_PRICING_READS,
        listeners: Listener | Iterable[Listener] | None = None,
    ) -> None:
        self.app = app
        self.config = config = build_config(
            routes=routes,
            facilitator=facilitator,
            blocking=False,
            pay_to=pay_to,
            network=network,
            store=store,
            max_timeout_seconds=max_timeout_seconds,
            resource_url=resource_url,
            settle_when=settle_when,
            max_pricing_body=max_pricing_body,
            check_funds=check_funds,
            listeners=listeners,
        )
        # Copied to attributes: read on every request.
        self.gate, self.facilitator, self.store = config.gate, config.facilitator, config.store
        self.settle_when, self.max_pricing_body = config.settle_when, config.max_pricing_body
        self.funds, self.listeners = config.funds, config.listeners
        if max_pricing_reads < 1:
            raise ConfigurationError(f"max_pricing_reads must be at least 1, got {max_pricing_reads}")
        self._pricing_reads = asyncio.Semaphore(max_pricing_reads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan and websockets pass through
            await self.app(scope, receive, send)
            return
        found = self.gate.find(scope["method"], scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        route, params = found
        if route.fixed is not None:
            requirements = route.fixed
        else:
            body: Any = None
            if route.price_body:
                try:
                    body, receive = await _peek_json_body(scope, receive, self.max_pricing_body, self._pricing_reads)
                except UnpriceableRequestError as exc:  # too large or too deeply nested
                    await _respond(send, pricing_failure(route, exc))
                    return
                except TimeoutError:
                    await _respond(send, _PRICING_BUSY)
                    return
            try:
                priced = self.gate.price(route, _payment_request(scope, params, body))
                requirements = priced if isinstance(priced, tuple) else await priced
            except (PricingError, UnpriceableRequestError) as exc:
                await _respond(send, pricing_failure(route, exc))
                return
        if not requirements:
            await self.app(scope, receive, send)
            return
        await self._paid(scope, receive, send, route, requirements)

    async def _paid(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: PaidRoute,
        requirements: tuple[PaymentRequirements, ...],
    ) -> None:
        def resource() -> ResourceInfo:
            host = _header(scope, b"host") or (
                f"{scope['server'][0]}:{scope['server'][1]}" if scope.get("server") else "localhost"
            )
            return self.gate.resource(
                route,
                scope.get("scheme", "http"),
                host,
                scope.get("root_path", "") + scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
            )

        flow = PaidFlow(
            self.gate,
            requirements,
            resource,
            head=scope["method"] == "HEAD",
            settle_when=self.settle_when,
            funds=self.funds if route.check_funds else None,
            request=scope,
            emit=bool(self.listeners),
        )
        answer = await run_async(flow.admit(scope["headers"]), self.facilitator, self.store, self.listeners)
        if answer is not None:
            await _respond(send, answer)
            return
        scope["x402.payment"] = flow.payment
        watch = ClientWatch(receive)

        async def send_with_settlement(message: Message) -> None:
            if flow.outcome == "replaced":
                return  # the app's output after we answered 402/502/503 in its place is dropped
            if flow.outcome != "unsent" or message["type"] != "http.response.start":
                await send(message)
                return
            decision = await run_async(
                flow.start(message["status"], client_gone=watch.gone), self.facilitator, self.store, self.listeners
            )
            if isinstance(decision, Answer):
                await _respond(send, decision)
                return
            if decision is not None:
                headers = message.setdefault("headers", [])
                if not isinstance(headers, list):
                    headers = message["headers"] = list(headers)
                _add_private(headers)
                headers.extend(decision)
            await send(message)

        try:
            await watch.start(has_body(scope))
            await self.app(scope, watch.receive, send_with_settlement)
        finally:
            watch.close()
            await run_async(flow.finish(), self.facilitator, self.store, self.listeners)


def _payment_request(scope: Scope, params: dict[str, str], body: Any) -> PaymentRequest:
    headers: dict[str, str] = {}
    for k, v in scope["headers"]:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return PaymentRequest(
        method=scope["method"],
        path=scope["path"],
        path_params=MappingProxyType(params),
        query=MappingProxyType(
            dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        ),
        headers=MappingProxyType(headers),
        body=body,
    )


def _add_private(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"cache-control":
            new = private_cache_control(value.decode("latin-1"))
            if new is not None:
                headers[i] = (name, new.encode("latin-1"))
            return
    headers.append((b"cache-control", b"private"))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _respond(send: Send, answer: Answer) -> None:
    headers = [*answer.headers, (b"content-length", str(len(answer.body)).encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _pricing_busy() -> Answer:
    return Gate.error(
        503,
        "pricing_busy",
        "too many request bodies are being read for pricing at once; retry in a second",
        retry_after=1,
    )


_PRICING_BUSY = _pricing_busy()


async def _peek_json_body(scope: Scope, receive: Receive, limit: int, slots: asyncio.Semaphore) -> tuple[Any, Receive]:
    """Read the request body for pricing without taking it from the app: the messages are replayed.

    Raises :class:`PricingBodyTooLargeError` over ``limit`` (before reading when ``Content-Length`` says so),
    ``UnpriceableRequestError`` for JSON nested too deeply, and ``TimeoutError`` when no read slot frees up.
    """
    declared = _header(scope, b"content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise PricingBodyTooLargeError(limit)
    if slots.locked():
        await asyncio.wait_for(slots.acquire(), PRICING_READ_WAIT)
    else:
        await slots.acquire()
    messages: list[Message] = []
    try:
        size = 0
        more = True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                raise PricingBodyTooLargeError(limit)  # the rest is never read
            more = message.get("more_body", False)
        parsed: Any = None
        if not more:
            parsed = parse_json_body(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request"))
    finally:
        slots.release()

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return parsed, replay
