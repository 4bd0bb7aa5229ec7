"""``PaymentMiddleware`` for Django: x402 payments in sync (WSGI) and async (ASGI) Django.

A thin shell over the shared :class:`~x402_middleware._gate.Gate` and paid-request
flow, in the django-cors-headers mould: ``sync_capable = async_capable = True``;
the mode follows ``get_response`` (async under ASGI, blocking under WSGI) and
picks the matching facilitator and store calls -- never an event loop per request.

The view runs with ``request.x402_payment`` set. When it returns a 2xx response
the payment is settled *before* the response is returned, so a
``StreamingHttpResponse`` then streams untouched; any other status, a HEAD
request or a failed view is never settled. A failed settlement replaces the
response with a 402 (or 503 while its outcome is unknown) and closes the view's response unread.

An ``upto`` payment (``x402_middleware.charge(request, amount)`` in the view) is settled with the view's charge when
it returns a response that does not stream; a ``StreamingHttpResponse`` is settled after its last chunk.

Under ASGI, Django 5+ cancels a view whose client disconnected, so nothing is settled for it; under
WSGI the server does not say, and a finished view is settled (see the README's "Disconnects").
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import RawPostDataException

from .._exceptions import PricingBodyTooLargeError
from .._fingerprint import request_fingerprint
from .._flow import (
    Decision,
    Flow,
    PaidFlow,
    decide,
    decide_async,
    decide_sync,
    parse_json_body,
    payment_headers_from_environ,
    private_cache_control,
    request_from_environ,
    run_async,
    run_sync,
)
from .._gate import Answer, PaidRoute
from ..models import PaymentPayload, PaymentRequirements, ResourceInfo
from ..usage import USAGE_KEY
from . import conf

__all__ = ["PaymentMiddleware"]


class PaymentMiddleware:
    """Charge for the routes in ``settings.X402["ROUTES"]``.

    ``settings.py``::

        MIDDLEWARE = [..., "x402_middleware.django.PaymentMiddleware"]
        X402 = {"ROUTES": {"GET /api/weather": "$0.001"}, "PAY_TO": "0xYourAddress",
                "NETWORK": "eip155:84532", "FACILITATOR_URL": "https://x402.org/facilitator"}

    A view reads ``request.x402_payment`` (a :class:`~x402_middleware.Payment`).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.config = conf.build(async_mode=self.async_mode)
        self.gate = self.config.gate
        self.journal = self.config.journal

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        pricing = self._decide(request, allow_async=False)
        if pricing is None:
            return self.get_response(request)
        outcome = decide_sync(pricing, lambda: _body_for_pricing(request, self.config.max_pricing_body))
        if outcome is None:
            return self.get_response(request)
        if isinstance(outcome, Answer):
            return _response(outcome)
        route, requirements = outcome.route, outcome.requirements
        fac, store, listeners, journal = self.config.facilitator, self.config.store, self.config.listeners, self.journal
        flow = self._flow(request, route, requirements)
        answer = run_sync(flow.admit(payment_headers_from_environ(request.META)), fac, store, listeners, journal)
        if answer is not None:
            return _response(answer)
        _expose(request, flow)
        decision = None
        try:
            response = self.get_response(request)
            decision = run_sync(_start(flow, response), fac, store, listeners, journal)
        finally:
            # Django hands the response to the server after this returns: a settled one counts as delivered.
            if flow.outcome != "metering":
                run_sync(flow.finish(delivered=decision is not None), fac, store, listeners, journal)
        if flow.outcome == "metering":  # a streamed upto response: settled once its last chunk went out
            response.streaming_content = _metered(
                response.streaming_content,
                lambda delivered: run_sync(flow.finish(delivered=delivered), fac, store, listeners, journal),
            )
        return _apply(response, decision)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        pricing = self._decide(request, allow_async=True)
        if pricing is None:
            return await get_response(request)

        async def read_body() -> Any:
            return _body_for_pricing(request, self.config.max_pricing_body)

        outcome = await decide_async(pricing, read_body)
        if outcome is None:
            return await get_response(request)
        if isinstance(outcome, Answer):
            return _response(outcome)
        route, requirements = outcome.route, outcome.requirements
        fac, store, listeners, journal = self.config.facilitator, self.config.store, self.config.listeners, self.journal
        flow = self._flow(request, route, requirements)
        answer = await run_async(flow.admit(payment_headers_from_environ(request.META)), fac, store, listeners, journal)
        if answer is not None:
            return _response(answer)
        _expose(request, flow)
        decision = None
        try:
            response = await get_response(request)
            decision = await run_async(_start(flow, response), fac, store, listeners, journal)
        finally:
            if flow.outcome != "metering":
                await run_async(flow.finish(delivered=decision is not None), fac, store, listeners, journal)
        if flow.outcome == "metering":

            async def finish(delivered: bool) -> None:
                await run_async(flow.finish(delivered=delivered), fac, store, listeners, journal)

            streaming: Any = response
            streaming.streaming_content = _ametered(streaming.streaming_content, streaming.is_async, finish)
        return _apply(response, decision)

    def _decide(self, request: HttpRequest, *, allow_async: bool) -> Decision | None:
        """The pricing decision of a request to a paid route, ``None`` for any other (it passes through)."""
        found = self.gate.find(request.method or "GET", request.path_info)
        if found is None:
            return None
        return decide(
            self.gate,
            *found,
            lambda params, body: request_from_environ(request.META, request.path_info, params, body),
            allow_async=allow_async,
        )

    def _flow(self, request: HttpRequest, route: PaidRoute, requirements: tuple[PaymentRequirements, ...]) -> PaidFlow:
        def resource() -> ResourceInfo:
            return self.gate.resource(
                route, request.scheme or "http", request.get_host(), request.path, request.META.get("QUERY_STRING", "")
            )

        return PaidFlow(
            self.gate,
            requirements,
            resource,
            head=request.method == "HEAD",
            settle_when=self.config.settle_when,
            funds=self.config.funds if route.check_funds else None,
            request=request,
            emit=bool(self.config.listeners),
            fingerprint=None if self.journal is None else _fingerprint(request),
            charge=route.charge,
        )


def _expose(request: HttpRequest, flow: PaidFlow) -> None:
    request.x402_payment = flow.payment  # type: ignore[attr-defined]
    if flow.usage is not None:  # x402_middleware.charge(request, amount) reports the actual charge
        request.META[USAGE_KEY] = flow.usage


def _start(flow: PaidFlow, response: HttpResponseBase) -> Flow[Answer | list[tuple[bytes, bytes]] | None]:
    # A response that does not stream is whole: an upto charge is final before it is returned.
    return flow.start(response.status_code, complete=not response.streaming, headers=response.items())


def _metered(content: Iterable[bytes], finish: Callable[[bool], None]) -> Iterator[bytes]:
    """A streamed upto response's content, settled (by ``finish``) once its last chunk was handed on."""
    delivered = False
    try:
        yield from content
        delivered = True
    finally:
        finish(delivered)


async def _ametered(content: Any, is_async: bool, finish: Callable[[bool], Awaitable[None]]) -> AsyncIterator[bytes]:
    delivered = False
    try:
        if is_async:
            async for chunk in content:
                yield chunk
        else:  # Django consumes a sync iterator under ASGI whole anyway (it warns)
            for chunk in content:
                yield chunk
        delivered = True
    finally:
        await finish(delivered)


def _fingerprint(request: HttpRequest) -> Callable[[PaymentPayload], str]:
    def fingerprint(payload: PaymentPayload) -> str:
        try:
            body = request.body  # what the view read (Django caches it), or read now
        except (RawPostDataException, RequestDataTooBig):  # streamed by the view, or over Django's own limit
            body = b""
        digest = hashlib.sha256(body).hexdigest() if body else ""
        method, query = request.method or "GET", request.META.get("QUERY_STRING", "")
        return request_fingerprint(method, request.path_info, query, digest, payload)

    return fingerprint


def _body_for_pricing(request: HttpRequest, limit: int) -> Any:
    # request.body is cached by Django, so the view can still read request.body, request.POST or request.read().
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > limit:
        raise PricingBodyTooLargeError(limit)  # refused before Django reads (and caches) the body
    if length <= 0:
        return None
    try:
        return parse_json_body(request.body)
    except (RawPostDataException, RequestDataTooBig):
        return None


def _response(answer: Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name.decode("latin-1")] = value.decode("latin-1")
    return response


def _apply(response: HttpResponseBase, decision: Answer | list[tuple[bytes, bytes]] | None) -> HttpResponseBase:
    if decision is None:
        return response
    if isinstance(decision, Answer):
        response.close()  # the view's content (a stream, a file) is dropped unread
        return _response(decision)
    cache_control = private_cache_control(response.get("Cache-Control"))
    if cache_control is not None:
        response["Cache-Control"] = cache_control
    for raw_name, raw_value in decision:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name == "access-control-expose-headers" and response.has_header(name):
            value = f"{response[name]}, {value}"  # append: CORS middleware may have set it already
        response[name] = value
    return response
