"""Views for the Django middleware tests."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from x402_middleware import charge

#: What the views saw, for assertions (one process).
SEEN: list[Any] = []
#: Set by a test to observe when a stream's chunks are produced.
EVENTS: list[Any] = []


def free(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"free": True})


def paid(request: HttpRequest) -> HttpResponse:
    SEEN.append(getattr(request, "x402_payment", None))
    return JsonResponse({"ok": True})


def status(request: HttpRequest, code: int) -> HttpResponse:
    SEEN.append(getattr(request, "x402_payment", None))
    return HttpResponse(b"status body", status=code)


def boom(request: HttpRequest) -> HttpResponse:
    SEEN.append(getattr(request, "x402_payment", None))
    raise RuntimeError("view failed")


def _gap() -> float:
    return float(os.environ.get("STREAM_GAP", "0"))


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def events() -> Iterator[bytes]:
        try:
            for i in range(3):
                EVENTS.append(("view", i))
                yield f"data: {i}\n\n".encode()
                time.sleep(_gap())
            yield b"data: [DONE]\n\n"
        finally:
            EVENTS.append("view-closed")

    return StreamingHttpResponse(events(), content_type="text/event-stream")


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def events() -> AsyncIterator[bytes]:
        for i in range(3):
            EVENTS.append(("view", i))
            yield f"data: {i}\n\n".encode()
            await asyncio.sleep(_gap())
        yield b"data: [DONE]\n\n"

    return StreamingHttpResponse(events(), content_type="text/event-stream")


def upto(request: HttpRequest) -> HttpResponse:
    charge(request, 11)  # pay for what you use: the actual charge of the upto payment
    return JsonResponse({"ok": True})


def upto_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def events() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        charge(request, 13)  # known at the end of the stream
        yield b"data: [DONE]"

    def sync_events() -> Iterator[bytes]:
        yield b"data: 1\n\n"
        charge(request, 13)
        yield b"data: [DONE]"

    asynchronous = isinstance(request, ASGIRequest)
    return StreamingHttpResponse(events() if asynchronous else sync_events(), content_type="text/event-stream")


def llm(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"got": request.body.decode(), "paid": getattr(request, "x402_payment", None) is not None})


urlpatterns = [
    path("free", free),
    path("paid", paid),
    path("status/<int:code>", status),
    path("boom", boom),
    path("stream", stream),
    path("astream", astream),
    path("llm", llm),
    path("upto", upto),
    path("upto-stream", upto_stream),
]
