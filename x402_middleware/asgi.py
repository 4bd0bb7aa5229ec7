"""``PaymentMiddleware``: x402 payments for any ASGI app (Starlette, FastAPI, Django ASGI, ...).

Flow of a paid route (``../shared/docs/x402-protocol.md`` §2, §6.3-6.4):

1. no payment header -> 402 with ``PAYMENT-REQUIRED`` (v2) and a v1 JSON body;
2. payment -> matched against the route's current requirements and verified
   locally by its scheme (EVM ``exact``: the EIP-712 signature, no facilitator
   round trip), then reserved so it is served at most once;
3. the app runs with the payment in ``scope["x402.payment"]``;
4. when the app starts a 2xx response, the payment is settled *before* that
   start message is forwarded; the body then streams untouched (SSE stays SSE).
   Any other status, an exception, or a HEAD request is never settled. A failed
   settlement replaces the response with a 402 and drops the app's body.

An ``upto`` payment (the app reports the actual charge with :func:`x402_middleware.charge`; see
:mod:`x402_middleware.usage`) is verified by the facilitator before the app runs. Its start message is held until
the first body message: a whole response (one body message) is settled then, as above; a stream is forwarded
at once and settled after the app returned, once its last byte went out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._asgi_io import (
    MAX_PRICING_READS,
    PRICING_BUSY,
    add_private,
    header,
    payment_request,
    peek_json_body,
    respond,
)
from ._config import MAX_PRICING_BODY, build_config
from ._disconnect import ClientWatch, has_body
from ._exceptions import ConfigurationError
from ._fingerprint import BodyDigest, digesting_receive, request_fingerprint
from ._flow import (
    PaidFlow,
    SettleWhen,
    decide,
    decide_async,
    run_async,
    settle_on_2xx,
)
from ._gate import Answer, PaidRoute, PayTo
from ._types import ASGIApp, Message, Receive, Scope, Send
from .events import Listener
from .facilitator import Facilitator
from .models import PaymentPayload, PaymentRequirements, ResourceInfo
from .stores import PaymentStore
from .usage import USAGE_KEY

if TYPE_CHECKING:
    from .journal import Journal

__all__ = ["MAX_PRICING_BODY", "MAX_PRICING_READS", "PRICING_BODY", "PaymentMiddleware", "settle_on_2xx"]

#: Scope key an outer ASGI layer may set to the body it already read and parsed: a ``price_body`` route then
#: hands that value to its pricing policy as ``PaymentRequest.body`` instead of reading the body again (the
#: layer replays the body to the app itself). It lets an app parse, validate and quote a request once and share
#: the result between its policy and its handler.
PRICING_BODY = "x402.pricing_body"


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

    A ``price_body`` route reads and parses the JSON body for its policy, unless an outer layer has put what
    the policy should see under ``scope[PRICING_BODY]`` (parsed once, shared with the handler).
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        *,
        routes: Mapping[str, Any],
        facilitator: Facilitator,
        pay_to: PayTo | None = None,
        network: str | Sequence[str] = "eip155:8453",
        store: PaymentStore | None = None,
        max_timeout_seconds: int = 300,
        resource_url: str | None = None,
        settle_when: SettleWhen = settle_on_2xx,
        max_pricing_body: int = MAX_PRICING_BODY,
        check_funds: bool = False,
        max_pricing_reads: int = MAX_PRICING_READS,
        listeners: Listener | Iterable[Listener] | None = None,
        journal: Journal | None = None,
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
            journal=journal,
        )
        # Copied to attributes: read on every request.
        self.gate, self.facilitator, self.store = config.gate, config.facilitator, config.store
        self.settle_when, self.max_pricing_body = config.settle_when, config.max_pricing_body
        self.funds, self.listeners, self.journal = config.funds, config.listeners, config.journal
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
        decision = decide(self.gate, *found, lambda params, body: payment_request(scope, params, body))

        async def read_body() -> Any:
            nonlocal receive
            if PRICING_BODY in scope:  # an outer layer already read and parsed the body: priced from that, once
                return scope[PRICING_BODY]
            body, receive = await peek_json_body(scope, receive, self.max_pricing_body, self._pricing_reads)
            return body

        try:
            outcome = await decide_async(decision, read_body)
        except TimeoutError:  # no pricing read slot freed up in time
            await respond(send, PRICING_BUSY)
            return
        if outcome is None:
            await self.app(scope, receive, send)
        elif isinstance(outcome, Answer):
            await respond(send, outcome)
        else:
            await self._paid(scope, receive, send, outcome.route, outcome.requirements)

    async def _paid(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: PaidRoute,
        requirements: tuple[PaymentRequirements, ...],
    ) -> None:
        def resource() -> ResourceInfo:
            host = header(scope, b"host") or (
                f"{scope['server'][0]}:{scope['server'][1]}" if scope.get("server") else "localhost"
            )
            return self.gate.resource(
                route,
                scope.get("scheme", "http"),
                host,
                scope.get("root_path", "") + scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
            )

        fingerprint = None
        if self.journal is not None:  # recovery binds a settled payment to the request it paid for
            digest = BodyDigest()
            receive = digesting_receive(receive, digest)
            query = scope.get("query_string", b"").decode("latin-1")

            def fingerprint(payload: PaymentPayload) -> str:
                return request_fingerprint(scope["method"], scope["path"], query, digest.hexdigest(), payload)

        flow = PaidFlow(
            self.gate,
            requirements,
            resource,
            head=scope["method"] == "HEAD",
            settle_when=self.settle_when,
            funds=self.funds if route.check_funds else None,
            request=scope,
            emit=bool(self.listeners),
            fingerprint=fingerprint,
            charge=route.charge,
        )
        journal = self.journal
        answer = await run_async(flow.admit(scope["headers"]), self.facilitator, self.store, self.listeners, journal)
        if answer is not None:
            await respond(send, answer)
            return
        scope["x402.payment"] = flow.payment
        if flow.usage is not None:
            scope[USAGE_KEY] = flow.usage  # x402_middleware.charge(scope, amount) reports the actual charge
        watch = ClientWatch(receive)
        delivered = False
        held: Message | None = None  # upto: the start, until the first body message says whether it is whole

        async def begin(message: Message, complete: bool) -> bool:
            decision = await run_async(
                flow.start(
                    message["status"], client_gone=watch.gone, complete=complete, headers=message.get("headers", ())
                ),
                self.facilitator,
                self.store,
                self.listeners,
                journal,
            )
            if isinstance(decision, Answer):
                await respond(send, decision)
                return False
            if decision is not None:
                headers = message.setdefault("headers", [])
                if not isinstance(headers, list):
                    headers = message["headers"] = list(headers)
                add_private(headers)
                headers.extend(decision)
            await send(message)
            return True

        async def send_with_settlement(message: Message) -> None:
            nonlocal delivered, held
            if flow.outcome == "replaced":
                return  # the app's output after we answered 402/502/503 in its place is dropped
            if flow.outcome == "unsent" and (held is not None or message["type"] == "http.response.start"):
                if held is None and flow.usage is not None:
                    held = message  # an upto charge is final once the body is: one body message settles first
                    return
                start, held = held or message, None
                if not await begin(start, complete=start is not message and _final(message)) or start is message:
                    return
            await send(message)
            if _final(message):
                delivered = True

        try:
            await watch.start(has_body(scope))
            await self.app(scope, watch.receive, send_with_settlement)
        finally:
            watch.close()
            # A streamed upto response is settled here, once the app returned: Starlette cancels a streaming
            # response's task as soon as the server reports the finished response's client gone.
            await run_async(flow.finish(delivered=delivered), self.facilitator, self.store, self.listeners, journal)


def _final(message: Message) -> bool:
    """The last message of a response (its body's end, or a whole file by ``pathsend``)."""
    kind = message["type"]
    return (kind == "http.response.body" and not message.get("more_body", False)) or kind == "http.response.pathsend"
