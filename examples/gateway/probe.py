"""Answer an unpaid request for a known-throttled model with its 429 *before* the payment layer sends a 402.

BlockRun's SDK fallbacks move to the next model on a 429 but never after signing
a payment (blockrun-clients.md §5), so the 429 has to reach the unpaid probe.
Placed outside the payment middleware and inside :class:`~.prepare.PrepareOnce`, whose prepared call names
the model; costs nothing while no model is throttled.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .prepare import PREPARED
from .service import Gateway

PAYMENT_HEADERS = (b"payment-signature", b"x-payment")


class ThrottleProbe:
    """Pure ASGI: for POSTs to inference paths without a payment header, 429 if the model is known throttled."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        prepared = scope.get(PREPARED)  # set by PrepareOnce, outside this layer, for inference POSTs
        if (
            prepared is None
            or not self.gateway.throttle.active()
            or any(k in PAYMENT_HEADERS for k, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        model = prepared.model_id
        limited = self.gateway.throttled(model)
        if limited is None:
            await self.app(scope, receive, send)
            return
        payload = limited.render()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in limited.headers().items()]
        scope.setdefault("gateway.trace", {}).update(model=model, throttled=True)
        await send({"type": "http.response.start", "status": limited.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
