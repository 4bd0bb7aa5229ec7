"""Read, parse, validate and quote an inference or media request once, before the payment layer and the handler.

The payment policy (``pricing.x402_price_policy``) and the handler (``app._Handlers``) both need the
validated call and its quote. :class:`PrepareOnce` makes them once per request and puts the result in
the scope: ``scope[PREPARED]`` for the handler and the throttle probe, ``scope[PRICING_BODY]`` for the
payment middleware, whose policy then sees the :class:`~.service.Prepared` as ``PaymentRequest.body``
instead of reading and parsing the body a second time. A body the gateway refuses (not JSON, unknown model,
bad ``max_tokens``, too large) is answered here, before any payment or upstream call::

    middleware = [Middleware(RequestLog, ...), Middleware(PrepareOnce, gateway=gateway), ...payment...]
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from x402_middleware.asgi import PRICING_BODY
from x402_middleware.wire import JSONTooDeepError, loads_untrusted

from .errors import GatewayError, InvalidRequest
from .media.requests import MediaCall
from .service import INFERENCE_PATHS, MEDIA_PATHS, Gateway, Prepared, api_of

#: Scope key of the request's :class:`~.service.Prepared` (set for every inference POST that reaches the app).
PREPARED = "gateway.prepared"

#: Bodies read at once: unpaid uploads hold at most ``MAX_READS x max_body_bytes`` bytes (the payment
#: middleware bounds its own reads the same way; this layer now does its reading).
MAX_READS = 32
#: Seconds a request waits for a read slot before its 503 ``BUSY`` (a burst queues; a flood is answered).
READ_WAIT = 10.0


class PrepareOnce:
    """Pure ASGI: for ``POST`` to an inference path, read the body (within ``max_body_bytes``) and prepare it."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.limit = gateway.config.max_body_bytes
        self._reads = asyncio.Semaphore(MAX_READS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        api, media = api_of(path) if path in INFERENCE_PATHS else None, MEDIA_PATHS.get(path)
        if api is None and media is None:
            await self.app(scope, receive, send)
            return
        try:
            messages = await self._read(scope, receive)
            if messages is None:
                return  # the client left while sending its body: there is no one to answer
            body = _parse(b"".join(m.get("body", b"") for m in messages))
            prepared: Prepared | MediaCall = (
                self.gateway.prepare(api, body) if api is not None else self.gateway.prepare_media(str(media), body)
            )
        except GatewayError as exc:
            scope.setdefault("gateway.trace", {})["error"] = exc.code
            await _answer(send, exc)
            return
        scope[PREPARED] = prepared
        scope[PRICING_BODY] = prepared

        async def replay() -> Message:  # the raw body stays readable for any app below
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> list[Message] | None:
        reads = self._reads
        if reads.locked():  # only then can acquire() wait: wait_for (a Task per call on 3.11) bounds the wait
            try:
                await asyncio.wait_for(reads.acquire(), READ_WAIT)
            except TimeoutError:
                raise Busy() from None
        else:
            await reads.acquire()
        try:
            return await _read(scope, receive, self.limit)
        finally:
            reads.release()


class Busy(GatewayError):
    """503: every read slot stayed taken for :data:`READ_WAIT` seconds (a flood of slow uploads)."""

    status = 503
    code = "BUSY"

    def __init__(self) -> None:
        super().__init__("too many request bodies are being read at once; retry in a second")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


async def prepared_in(scope: Scope, receive: Receive) -> Prepared | MediaCall:
    """The request's :class:`~.service.Prepared` or media call (the app is always built with :class:`PrepareOnce`).

    Drains the replayed body first (already in memory, not parsed again): the payment middleware starts
    watching for a client that disconnects once the app has read its body, so that it does not charge for
    an answer nobody receives (``x402_middleware._disconnect``).
    """
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    prepared = scope.get(PREPARED)
    assert isinstance(prepared, (Prepared, MediaCall)), "inference and media routes run behind PrepareOnce"
    return prepared


async def prepared_of(request: Request) -> Prepared | MediaCall:
    """:func:`prepared_in` for a Starlette request handler."""
    return await prepared_in(request.scope, request.receive)


async def _read(scope: Scope, receive: Receive, limit: int) -> list[Message] | None:
    for key, value in scope["headers"]:
        if key == b"content-length" and value.strip().isdigit() and int(value) > limit:
            raise _too_large(limit)  # refused before a byte of it is read
    messages: list[Message] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        messages.append(message)
        size += len(message.get("body", b""))
        if size > limit:  # a body without Content-Length is never read whole
            raise _too_large(limit)
        more = message.get("more_body", False)
    return messages


def _too_large(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"the request body is larger than {limit} bytes; send at most {limit} bytes",
        status=413,
        code="PAYLOAD_TOO_LARGE",
    )


def _parse(raw: bytes) -> Any:
    try:
        return loads_untrusted(raw)
    except JSONTooDeepError as exc:
        raise InvalidRequest(f"the request body is refused: {exc}", code="REQUEST_BODY_TOO_DEEP") from None
    except ValueError:  # UnicodeDecodeError included
        raise InvalidRequest("the request body is not valid JSON") from None


async def _answer(send: Send, error: GatewayError) -> None:
    body = error.render()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
