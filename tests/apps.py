"""Small apps served by real uvicorn processes in tests (importable as ``tests.apps:...``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests._facilitator_double import FakeFacilitator
from x402_middleware import PaymentMiddleware

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


async def _stream(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/free":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"free"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(3):
        await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await asyncio.sleep(float(os.environ.get("STREAM_GAP", "0.4")))
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def streaming_app() -> PaymentMiddleware:
    return PaymentMiddleware(
        _stream, routes={"GET /stream": "$0.001"}, pay_to=PAY_TO, network="eip155:84532", facilitator=FakeFacilitator()
    )
