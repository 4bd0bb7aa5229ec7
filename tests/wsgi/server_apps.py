"""A WSGI app served by a real gunicorn in tests (``tests.wsgi.server_apps:app``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware.wsgi import PaymentWSGIMiddleware

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
facilitator = SyncFakeFacilitator(settle_delay=float(os.environ.get("SETTLE_DELAY", "0")))


def _app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    path = environ["PATH_INFO"]
    if path == "/free":
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"free"
    elif path == "/settled":
        start_response("200 OK", [("Content-Type", "application/json")])
        yield json.dumps({"settled": len(facilitator.settled)}).encode()
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        for i in range(3):
            yield f"data: {i}\n\n".encode()
            time.sleep(float(os.environ.get("STREAM_GAP", "0.4")))
        yield b"data: [DONE]\n\n"
    else:
        start_response("200 OK", [("Content-Type", "application/json")])
        yield b'{"paid":true}'


app = PaymentWSGIMiddleware(
    _app,
    routes={"GET /stream": "$0.001", "GET /paid": "$0.001"},
    pay_to=PAY_TO,
    network="eip155:84532",
    facilitator=facilitator,
)
