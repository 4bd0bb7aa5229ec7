"""``PaymentWSGIMiddleware``: x402 payments for any WSGI app (Flask, Django under WSGI, Falcon, Bottle, ...).

The same behaviour as the ASGI :class:`~x402_middleware.PaymentMiddleware`, over
the same :class:`~x402_middleware._gate.Gate` and paid-request flow (``_flow.py``),
with blocking calls to a :class:`~x402_middleware.SyncFacilitator` and a
:class:`~x402_middleware.stores.SyncPaymentStore` -- never an event loop per request:

1. no payment -> 402 (``PAYMENT-REQUIRED`` header and v1 JSON body); a bad one -> 400/402 with the reason;
2. a valid payment is reserved (served at most once) and put in ``environ["x402.payment"]``;
3. the app's status and headers are held back until its first non-empty chunk
   (or its end); a 2xx is settled *then*, before any byte reaches the client,
   and the iterable then streams through untouched. Other statuses, HEAD
   requests and exceptions are never settled; a failed settlement replaces the
   response with a 402/502 and the app's body is dropped. ``close()`` is always
   passed on.

An ``upto`` payment (``x402_middleware.charge(environ, amount)``) is settled at the first chunk when that chunk is
the whole body (its ``Content-Length``, or a one-item list), else when the server calls ``close()`` after the
last chunk.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ._config import MAX_PRICING_BODY, build_config
from ._exceptions import PricingBodyTooLargeError
from ._fingerprint import BodyDigest, DigestingInput, request_fingerprint
from ._flow import (
    PaidFlow,
    SettleWhen,
    decide,
    decide_sync,
    parse_json_body,
    payment_headers_from_environ,
    private_cache_control,
    request_from_environ,
    run_sync,
    settle_on_2xx,
)
from ._gate import Answer, PaidRoute, PayTo
from .events import Listener
from .facilitator import SyncFacilitator
from .models import PaymentPayload, PaymentRequirements, ResourceInfo
from .stores import SyncPaymentStore
from .usage import USAGE_KEY

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .journal import Journal

__all__ = ["MAX_PRICING_BODY", "PaymentWSGIMiddleware"]

# A ``price_body`` route answers 413 to a body over MAX_PRICING_BODY (``max_pricing_body=``), refused by its ``Content-Length``
# before any byte is read (or, under ``wsgi.input_terminated``, once the cap is passed). No bound on concurrent
# reads is needed here: the WSGI server's worker threads already bound them.


class PaymentWSGIMiddleware:
    """Gate routes of a WSGI app behind x402 payments.

    :param app: any WSGI callable.
    :param routes: ``{"GET /weather": "$0.001", "POST /v1/chat": RouteConfig(price=quote, price_body=True)}``.
    :param facilitator: a blocking facilitator, e.g. ``SyncHTTPFacilitator(url)``.
    :param store: where payments in flight are remembered (default: this process only).

    Flask::

        app.wsgi_app = PaymentWSGIMiddleware(app.wsgi_app, routes={"GET /weather": "$0.001"},
                                             pay_to="0xYourAddress", network="eip155:84532",
                                             facilitator=SyncHTTPFacilitator("https://x402.org/facilitator"))

    In the view, ``request.environ["x402.payment"]`` is the verified :class:`~x402_middleware.Payment`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        /,
        *,
        routes: Mapping[str, Any],
        facilitator: SyncFacilitator,
        pay_to: PayTo | None = None,
        network: str | Sequence[str] = "eip155:8453",
        store: SyncPaymentStore | None = None,
        max_timeout_seconds: int = 300,
        resource_url: str | None = None,
        settle_when: SettleWhen = settle_on_2xx,
        max_pricing_body: int = MAX_PRICING_BODY,
        check_funds: bool = False,
        listeners: Listener | Iterable[Listener] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.app = app
        self.config = config = build_config(
            routes=routes,
            facilitator=facilitator,
            blocking=True,
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

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = _decode_path(environ.get("PATH_INFO", ""))
        found = self.gate.find(environ.get("REQUEST_METHOD", "GET").upper(), path)
        if found is None:
            return self.app(environ, start_response)
        decision = decide(
            self.gate, *found, lambda params, body: request_from_environ(environ, path, params, body), allow_async=False
        )
        outcome = decide_sync(decision, lambda: _peek_json_body(environ, self.max_pricing_body))
        if outcome is None:
            return self.app(environ, start_response)
        if isinstance(outcome, Answer):
            return _respond(start_response, outcome)
        return self._paid(environ, start_response, outcome.route, outcome.requirements)

    def _paid(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        route: PaidRoute,
        requirements: tuple[PaymentRequirements, ...],
    ) -> Iterable[bytes]:
        def resource() -> ResourceInfo:
            host = (
                environ.get("HTTP_HOST")
                or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
            )
            path = _decode_path(environ.get("SCRIPT_NAME", "")) + _decode_path(environ.get("PATH_INFO", ""))
            return self.gate.resource(
                route, environ.get("wsgi.url_scheme", "http"), host, path, environ.get("QUERY_STRING", "")
            )

        fingerprint = None
        if self.journal is not None:  # recovery binds a settled payment to the request it paid for
            digest = BodyDigest()
            environ["wsgi.input"] = DigestingInput(environ["wsgi.input"], digest)
            method, query = environ.get("REQUEST_METHOD", "GET"), environ.get("QUERY_STRING", "")
            path = _decode_path(environ.get("PATH_INFO", ""))

            def fingerprint(payload: PaymentPayload) -> str:
                return request_fingerprint(method, path, query, digest.hexdigest(), payload)

        flow = PaidFlow(
            self.gate,
            requirements,
            resource,
            head=environ.get("REQUEST_METHOD") == "HEAD",
            settle_when=self.settle_when,
            funds=self.funds if route.check_funds else None,
            request=environ,
            emit=bool(self.listeners),
            fingerprint=fingerprint,
            charge=route.charge,
        )
        answer = run_sync(
            flow.admit(payment_headers_from_environ(environ)),
            self.facilitator,
            self.store,
            self.listeners,
            self.journal,
        )
        if answer is not None:
            return _respond(start_response, answer)
        environ["x402.payment"] = flow.payment
        if flow.usage is not None:
            environ[USAGE_KEY] = flow.usage  # x402_middleware.charge(environ, amount) reports the actual charge
        return _PaidResponse(self, flow, environ, start_response)


class _PaidResponse:
    """The app's response with settlement before its first body byte (one per request, never shared).

    ``start_response`` is wrapped so the status and headers are held until the
    app produces its first non-empty chunk (through the iterable or the legacy
    ``write()``), or finishes without one; that is when the flow settles.
    """

    def __init__(
        self, mw: PaymentWSGIMiddleware, flow: PaidFlow, environ: WSGIEnvironment, start_response: StartResponse
    ) -> None:
        self._mw = mw
        self._flow = flow
        self._start_response = start_response
        self._held: tuple[str, list[tuple[str, str]]] | None = None
        self._server_write: Any = None  # set once the real start_response was called for the app's response
        self._replacement: bytes | None = None  # our 402/502 body, yielded instead of the app's
        self._done = False
        self._delivered = False  # the app's iterable ran to its end
        self._closed = False
        self._result: Iterable[bytes] | None = None
        try:
            self._result = mw.app(environ, self._app_start_response)
            self._iter: Iterator[bytes] = iter(self._result)
        except BaseException:
            self.close()
            raise

    # The WSGI server iterates us and then calls close(), even after an exception (PEP 3333).
    def __iter__(self) -> _PaidResponse:
        return self

    def __next__(self) -> bytes:
        while True:
            if self._replacement is not None:
                body, self._replacement, self._done = self._replacement, None, True
                return body
            if self._done:
                raise StopIteration
            try:
                chunk = next(self._iter)
            except StopIteration:
                self._done = self._delivered = True
                if self._server_write is None and self._flow.outcome != "replaced":
                    self._begin(complete=True)  # an empty body: decide now
                    continue
                raise
            if self._server_write is not None:
                return chunk
            if chunk:
                self._begin(complete=self._whole(chunk))
                if self._replacement is None:
                    return chunk

    def _app_start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        if exc_info is not None:
            try:
                if self._server_write is not None:
                    # Our start_response already went to the server: let it decide (it raises if bytes were sent).
                    return self._start_response(status, headers, exc_info)
            finally:
                exc_info = None  # break the traceback cycle, as PEP 3333 asks
        elif self._held is not None:
            raise RuntimeError("start_response() was called twice without exc_info (PEP 3333)")
        self._held = (status, list(headers))
        return self._app_write

    def _app_write(self, data: bytes) -> None:
        if self._server_write is None:
            if self._flow.outcome == "replaced" or not data:
                return
            self._begin(complete=False)
            if self._flow.outcome == "replaced":
                return
        self._server_write(data)

    def _whole(self, chunk: bytes) -> bool:
        """Whether the first chunk is the whole body (an upto charge is then final before anything is sent)."""
        if isinstance(self._result, (list, tuple)) and len(self._result) == 1:
            return True
        assert self._held is not None
        length = next((v for k, v in self._held[1] if k.lower() == "content-length"), None)
        return length is not None and length.strip() == str(len(chunk))

    def _begin(self, *, complete: bool) -> None:
        if self._held is None:
            raise RuntimeError("the WSGI app produced a body before calling start_response()")
        status, headers = self._held
        mw = self._mw
        decision = run_sync(
            self._flow.start(_status_code(status), complete=complete, headers=headers),
            mw.facilitator,
            mw.store,
            mw.listeners,
            mw.journal,
        )
        if isinstance(decision, Answer):
            self._replacement = decision.body
            _start(self._start_response, decision)
            return
        if decision is not None:
            _add_private(headers)
            headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in decision)
        self._server_write = self._start_response(status, headers)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            mw = self._mw  # a streamed upto response is settled here (after its last byte), by finish()
            run_sync(self._flow.finish(delivered=self._delivered), mw.facilitator, mw.store, mw.listeners, mw.journal)


def _decode_path(raw: str) -> str:
    # WSGI paths are bytes decoded as latin-1 (PEP 3333); ASGI and route patterns use UTF-8 text.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def _status_code(status: str) -> int:
    try:
        return int(status.split(None, 1)[0])
    except (ValueError, IndexError):
        raise RuntimeError(f"the WSGI app gave an invalid status line {status!r}") from None


def _add_private(headers: list[tuple[str, str]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == "cache-control":
            new = private_cache_control(value)
            if new is not None:
                headers[i] = (name, new)
            return
    headers.append(("Cache-Control", "private"))


def _start(start_response: StartResponse, answer: Answer) -> None:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers]
    headers.append(("Content-Length", str(len(answer.body))))
    start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", headers)


def _respond(start_response: StartResponse, answer: Answer) -> list[bytes]:
    _start(start_response, answer)
    return [answer.body]


def _peek_json_body(environ: WSGIEnvironment, limit: int) -> Any:
    """Read the body for pricing and put it back in front of ``wsgi.input`` (the app still reads all of it).

    Raises :class:`PricingBodyTooLargeError` over ``limit`` (413), reading at most ``limit + 1`` bytes.
    """
    stream = environ.get("wsgi.input")
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return None
    if length > limit:
        raise PricingBodyTooLargeError(limit)
    if stream is None or (length < 0 and not environ.get("wsgi.input_terminated")):
        return None  # no length and no safe way to find the end (PEP 3333)
    want = length if length >= 0 else limit + 1
    chunks: list[bytes] = []
    got = 0
    while got < want:
        chunk = stream.read(want - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    raw = b"".join(chunks)
    if got > limit:
        raise PricingBodyTooLargeError(limit)
    # Content-Length bytes were all read, so nothing is left behind; without a length, the rest is read on demand.
    environ["wsgi.input"] = _ReplayInput(raw, stream, 0 if length >= 0 else None)
    return parse_json_body(raw) if length < 0 or got == length else None


class _ReplayInput(io.RawIOBase):
    """``wsgi.input`` with the bytes already read for pricing put back in front.

    ``remaining`` is how many bytes the original stream may still give (``0``
    once Content-Length bytes were read, ``None`` for a terminated stream);
    reading past it could block on the socket.
    """

    def __init__(self, head: bytes, rest: Any, remaining: int | None) -> None:
        super().__init__()
        self._head = io.BytesIO(head)
        self._rest = rest
        self._remaining = remaining

    def readable(self) -> bool:
        return True

    def _from_rest(self, size: int, line: bool = False) -> bytes:
        if self._remaining == 0:
            return b""
        if self._remaining is not None:
            size = self._remaining if size < 0 else min(size, self._remaining)
        data: bytes = (
            (self._rest.readline(size) if line else self._rest.read(size))
            if size >= 0
            else (self._rest.readline() if line else self._rest.read())
        )
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        data = self._head.read(size)
        if size < 0:
            return data + self._from_rest(-1)
        if len(data) < size:
            data += self._from_rest(size - len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        line = self._head.readline(size)
        if line.endswith(b"\n") or (size >= 0 and len(line) >= size):
            return line
        return line + self._from_rest(size - len(line) if size >= 0 else -1, line=True)
