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

import inspect
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from ._exceptions import FacilitatorError, InvalidPaymentError, PricingError
from ._gate import PAYMENT_ALREADY_USED, PAYMENT_IN_PROGRESS, Gate, Headers, _Route, logger
from ._types import ASGIApp, Message, Receive, Scope, Send
from .facilitator._protocol import Facilitator
from .models import Payment, PaymentPayload, PaymentRequirements, ResourceInfo, SettleResult
from .pricing import PaymentRequest
from .stores import SETTLED, InMemoryStore, PaymentStore, payment_key

#: Bodies larger than this are not parsed for pricing (the policy sees ``body=None``).
MAX_PRICING_BODY = 1 << 20


def settle_on_2xx(status: int) -> bool:
    """Default settlement predicate: only successful responses are paid for (x402-conformance R15)."""
    return 200 <= status < 300


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

    def __init__(self, app: ASGIApp, /, *, routes: Mapping[str, Any], facilitator: Facilitator,
                 pay_to: str | None = None, network: str | Sequence[str] = "eip155:8453",
                 store: PaymentStore | None = None, max_timeout_seconds: int = 300, resource_url: str | None = None,
                 settle_when: Any = settle_on_2xx, max_pricing_body: int = MAX_PRICING_BODY) -> None:
        self.app = app
        self.gate = Gate(routes=routes, pay_to=pay_to, network=network, max_timeout_seconds=max_timeout_seconds,
                         resource_url=resource_url)
        self.facilitator = facilitator
        self.store: PaymentStore = store if store is not None else InMemoryStore()
        self.settle_when = settle_when
        self.max_pricing_body = max_pricing_body

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
                body, receive = await _peek_json_body(receive, self.max_pricing_body)
            try:
                requirements = await self._price(route, scope, params, body)
            except PricingError as exc:
                logger.exception("x402: the price function of %s failed", route.pattern.path)
                await _respond(send, *self.gate.error(500, "pricing_error", f"this route's price could not be computed: {exc}"))
                return
        if not requirements:
            await self.app(scope, receive, send)
            return
        await _PaidRequest(self, scope, route, requirements).run(receive, send)

    async def _price(self, route: _Route, scope: Scope, params: dict[str, str], body: Any) -> tuple[PaymentRequirements, ...]:
        assert route.policy is not None
        request = PaymentRequest(
            method=scope["method"],
            path=scope["path"],
            path_params=params,
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        try:
            price = route.policy(request)
            if inspect.isawaitable(price):
                price = await price
            return self.gate.requirements(route, price)
        except PricingError:
            raise
        except Exception as exc:
            raise PricingError(f"{type(exc).__name__}: {exc}") from exc


class _PaidRequest:
    """Per-request state of one paid route (kept off the middleware, which is shared)."""

    def __init__(self, mw: PaymentMiddleware, scope: Scope, route: _Route, requirements: tuple[PaymentRequirements, ...]):
        self.mw = mw
        self.scope = scope
        self.route = route
        self.requirements = requirements

    def resource(self) -> ResourceInfo:
        scope = self.scope
        host = _header(scope, b"host") or (f"{scope['server'][0]}:{scope['server'][1]}" if scope.get("server") else "localhost")
        path = scope.get("root_path", "") + scope["path"]
        return self.mw.gate.resource(self.route, scope.get("scheme", "http"), host, path,
                                     scope.get("query_string", b"").decode("latin-1"))

    async def run(self, receive: Receive, send: Send) -> None:
        gate, scope = self.mw.gate, self.scope
        try:
            payload = gate.read_payment(scope["headers"])
            if payload is None:
                await _respond(send, *gate.challenge(self.requirements, self.resource()))
                return
            requirement, local = gate.check(payload, self.requirements)
        except InvalidPaymentError as exc:
            await _respond(send, *gate.challenge(self.requirements, self.resource(), error=exc.reason,
                                                 message=exc.message, status=exc.status_code))
            return
        if local is None:  # contract-wallet signature: only the facilitator can tell
            try:
                remote = await self.mw.facilitator.verify(payload, requirement)
            except FacilitatorError as exc:
                logger.warning("x402: facilitator verify failed: %s", exc)
                await _respond(send, *gate.error(502, "facilitator_error", f"the payment could not be verified: {exc}"))
                return
            if not remote.is_valid:
                await _respond(send, *gate.challenge(self.requirements, self.resource(),
                                                     error=remote.invalid_reason or "invalid_payment",
                                                     message=remote.invalid_message))
                return

        auth = payload.authorization
        key = payment_key(requirement.network.chain_id, requirement.asset.address, auth.from_address, auth.nonce)
        ttl = max(auth.valid_before - time.time(), 0) + 60
        state = await self.mw.store.reserve(key, ttl)
        if state is not None:
            reason = PAYMENT_ALREADY_USED if state == SETTLED else PAYMENT_IN_PROGRESS
            message = ("this payment was already used; sign a new one" if state == SETTLED
                       else "this payment is being used by another request; sign a new one or retry later")
            await _respond(send, *gate.challenge(self.requirements, self.resource(), error=reason, message=message))
            return

        scope["x402.payment"] = Payment(auth.from_address, requirement.amount, requirement, payload)
        await self._serve(receive, send, payload, requirement, key, ttl)

    async def _serve(self, receive: Receive, send: Send, payload: PaymentPayload, requirement: PaymentRequirements,
                     key: str, ttl: float) -> None:
        mw = self.mw
        outcome = "unsent"  # unsent -> (settled | forwarded | replaced)
        is_head = self.scope["method"] == "HEAD"

        async def send_with_settlement(message: Message) -> None:
            nonlocal outcome
            if outcome == "replaced":
                return  # the app's output after we answered 402/502 in its place is dropped
            if outcome != "unsent" or message["type"] != "http.response.start":
                await send(message)
                return
            status = message["status"]
            if is_head or not mw.settle_when(status):
                outcome = "forwarded"
                await send(message)
                return
            try:
                result = await _settle(mw.facilitator, payload, requirement)
            except FacilitatorError as exc:
                # Unknown outcome: keep the reservation so this payment cannot be served twice.
                outcome = "replaced"
                logger.error("x402: settlement failed for %s: %s", payload.payer, exc)
                await _respond(send, *mw.gate.error(502, "facilitator_error", f"the payment could not be settled: {exc}"))
                return
            if not result.success:
                outcome = "replaced"
                logger.info("x402: settlement refused for %s: %s", payload.payer, result.error_reason)
                if result.error_reason != "settlement_pending":
                    await mw.store.release(key)
                await _respond(send, *mw.gate.challenge(
                    self.requirements, self.resource(), error=result.error_reason or "settlement_failed",
                    message=result.error_message or "the payment could not be settled", settlement=result,
                    x402_version=payload.x402_version))
                return
            outcome = "settled"
            await mw.store.mark_settled(key, ttl)
            headers = message.setdefault("headers", [])
            if not isinstance(headers, list):
                headers = message["headers"] = list(headers)
            _add_private(headers)
            headers.extend(mw.gate.settlement_headers(result, requirement, payload.x402_version))
            await send(message)

        try:
            await mw.app(self.scope, receive, send_with_settlement)
        finally:
            if outcome in ("unsent", "forwarded"):
                await mw.store.release(key)


async def _settle(facilitator: Facilitator, payload: PaymentPayload, requirement: PaymentRequirements) -> SettleResult:
    result = await facilitator.settle(payload, requirement)
    if not result.success and result.error_reason == "settlement_pending":
        # The transaction was sent but not confirmed in time; ask once more, as the official server does.
        result = await facilitator.settle(payload, requirement)
    return result


def _add_private(headers: Headers) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"cache-control":
            if b"private" not in value and b"no-store" not in value:
                headers[i] = (name, value + b", private" if value else b"private")
            return
    headers.append((b"cache-control", b"private"))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _peek_json_body(receive: Receive, limit: int) -> tuple[Any, Receive]:
    """Read the request body for pricing without taking it from the app: the messages are replayed."""
    import json

    messages: list[Message] = []
    size = 0
    more = True
    while more and size <= limit:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    parsed: Any = None
    if not more and size <= limit:
        raw = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return parsed, replay
