"""Answer an unpaid request for a known-throttled model with its 429 *before* the payment layer sends a 402.

BlockRun's SDK fallbacks move to the next model on a 429 but never after signing
a payment (blockrun-clients.md §5), so the 429 has to reach the unpaid probe.
Placed outside the payment middleware; costs nothing while no model is throttled.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from x402_middleware.wire import loads_untrusted

from .service import Gateway, api_of

PAYMENT_HEADERS = (b"payment-signature", b"x-payment")
MAX_PEEK = 1 << 20


class ThrottleProbe:
    """Pure ASGI: for POSTs to inference paths without a payment header, 429 if the model is known throttled."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.gateway.throttle.active()
            or scope["method"] != "POST"
            or api_of(scope["path"]) is None
            or any(k in PAYMENT_HEADERS for k, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        messages, body = await _peek(receive)
        model = _model_of(body)
        limited = self.gateway.throttled(model) if model else None
        if limited is not None:
            payload = limited.render()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in limited.headers().items()]
            scope.setdefault("gateway.trace", {}).update(model=model, throttled=True)
            await send({"type": "http.response.start", "status": limited.status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _peek(receive: Receive) -> tuple[list[Message], bytes]:
    messages: list[Message] = []
    size, more = 0, True
    while more and size <= MAX_PEEK:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    return messages, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")


def _model_of(body: bytes) -> str | None:
    try:
        data: Any = loads_untrusted(body)
    except ValueError:  # UnicodeDecodeError included
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None
