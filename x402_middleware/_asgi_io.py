"""The ASGI side of the middleware: reading a scope for pricing, peeking at the body, sending an answer.

Kept out of :mod:`x402_middleware.asgi` so the middleware there reads as the flow it is.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from ._exceptions import PricingBodyTooLargeError
from ._flow import parse_json_body, private_cache_control
from ._gate import Answer, Gate
from ._types import Message, Receive, Scope, Send
from .pricing import PaymentRequest

# A ``price_body`` route answers 413 to a body over MAX_PRICING_BODY (``max_pricing_body=``), refused by its
# ``Content-Length`` before any byte is read, or as soon as a body without one passes the cap.

#: Bodies read for pricing at once (``max_pricing_reads=``), so that unpaid uploads hold at most
#: ``MAX_PRICING_READS * max_pricing_body`` bytes. Further requests wait for a turn, up to
#: :data:`PRICING_READ_WAIT` seconds, then get 503 ``pricing_busy`` with ``Retry-After``.
MAX_PRICING_READS = 32

#: Seconds a request waits for a pricing read slot before its 503: a burst queues, a sustained flood of slow uploads
#: holding every slot is answered rather than piling up waiting requests.
PRICING_READ_WAIT = 10.0


def payment_request(scope: Scope, params: dict[str, str], body: Any) -> PaymentRequest:
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


def add_private(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"cache-control":
            new = private_cache_control(value.decode("latin-1"))
            if new is not None:
                headers[i] = (name, new.encode("latin-1"))
            return
    headers.append((b"cache-control", b"private"))


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def respond(send: Send, answer: Answer) -> None:
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


PRICING_BUSY = _pricing_busy()


async def peek_json_body(scope: Scope, receive: Receive, limit: int, slots: asyncio.Semaphore) -> tuple[Any, Receive]:
    """Read the request body for pricing without taking it from the app: the messages are replayed.

    Raises :class:`PricingBodyTooLargeError` over ``limit`` (before reading when ``Content-Length`` says so),
    ``UnpriceableRequestError`` for JSON nested too deeply, and ``TimeoutError`` when no read slot frees up.
    """
    declared = header(scope, b"content-length")
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
