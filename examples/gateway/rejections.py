"""BlockRun's ``code`` on a refused payment's 402 body (blockrun-clients.md §2.5, §7.5).

:class:`~x402_middleware.PaymentMiddleware` answers a payment it refuses with 402, a fresh ``PAYMENT-REQUIRED``
header and the x402 v1 body ``{"x402Version": 1, "error": "<reason>", "accepts": [...], "message": ...}``.
BlockRun's gateway adds ``code``, and its Python SDK reads it to tell a replay from a verification failure:
``PAYMENT_REPLAY`` means an earlier request with the same authorization was served and paid for, so the SDK
warns against simply retrying (a retry signs a new authorization and is billed again); ``PAYMENT_INVALID`` and
``PAYMENT_UNFUNDED`` mean nothing was charged. This layer adds only that field -- every x402 field stays as it
was, so x402 clients read the same body::

    app = BlockRunRejectionCodes(PaymentMiddleware(app, ...))
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from x402_middleware.wire import loads_untrusted

from .probe import PAYMENT_HEADERS

#: x402 reasons (the middleware's and the official facilitator's strings) -> BlockRun's code; others: PAYMENT_INVALID.
CODES = {
    "invalid_exact_evm_nonce_already_used": "PAYMENT_REPLAY",  # settled before: served once already
    "payment_in_progress": "PAYMENT_REPLAY",  # the same authorization is being served by another request
    "invalid_exact_evm_insufficient_balance": "PAYMENT_UNFUNDED",
    "insufficient_funds": "PAYMENT_UNFUNDED",
}


def rejection_code(reason: Any) -> str:
    """BlockRun's ``code`` for an x402 rejection reason: ``rejection_code("insufficient_funds") == "PAYMENT_UNFUNDED"``."""
    return CODES.get(reason, "PAYMENT_INVALID") if isinstance(reason, str) else "PAYMENT_INVALID"


class BlockRunRejectionCodes:
    """Pure ASGI: on a 402 to a request that carried a payment header, add ``code`` to the JSON body.

    Costs one header scan per request; only those 402s (small JSON bodies) are buffered and rewritten.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(k in PAYMENT_HEADERS for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_coded(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 402:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _with_code(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_coded)


def _with_code(body: bytes) -> bytes:
    try:
        data = loads_untrusted(body)
    except ValueError:  # UnicodeDecodeError included
        return body
    if not isinstance(data, dict) or "code" in data:
        return body
    data["code"] = rejection_code(data.get("error"))
    return json.dumps(data, separators=(",", ":")).encode()
