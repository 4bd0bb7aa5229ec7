"""Small raw WSGI apps and a PEP 3333 server harness for the WSGI middleware tests."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import setup_testing_defaults

from tests._sync_facilitator_double import SyncFakeFacilitator
from x402_middleware.wsgi import PaymentWSGIMiddleware

PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
NETWORK = "eip155:84532"


class RecordingApp:
    """A WSGI app whose status, chunks and failures are configurable; it records what it saw and did."""

    def __init__(
        self,
        status: str = "200 OK",
        chunks: Sequence[bytes] = (b'{"ok":true}',),
        *,
        raise_at: str | None = None,
        lazy_start: bool = False,
        use_write: bool = False,
        headers: Sequence[tuple[str, str]] = (("Content-Type", "application/json"),),
        events: list[Any] | None = None,
    ) -> None:
        self.status = status
        self.chunks = tuple(chunks)
        self.raise_at = raise_at  # "call" | "iter"
        self.lazy_start = lazy_start
        self.use_write = use_write
        self.headers = list(headers)
        self.events: list[Any] = events if events is not None else []
        self.payments: list[Any] = []
        self.bodies: list[bytes] = []
        self.closed = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.payments.append(environ.get("x402.payment"))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.bodies.append(environ["wsgi.input"].read(length) if length else b"")
        if self.raise_at == "call":
            raise RuntimeError("app failed")
        if self.use_write:
            write = start_response(self.status, list(self.headers))
            for chunk in self.chunks:
                self.events.append(("app", chunk))
                write(chunk)
            return _Closing(iter(()), self)
        if not self.lazy_start:
            start_response(self.status, list(self.headers))
        return _Closing(self._body(start_response), self)

    def _body(self, start_response: Any) -> Iterator[bytes]:
        if self.lazy_start:
            yield b""
            start_response(self.status, list(self.headers))
        if self.raise_at == "iter":
            raise RuntimeError("app failed while streaming")
        for chunk in self.chunks:
            self.events.append(("app", chunk))
            yield chunk


class _Closing:
    def __init__(self, it: Iterator[bytes], app: RecordingApp) -> None:
        self._it = it
        self._app = app

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        self._app.closed += 1
        self._app.events.append("app-closed")


def protect(app: Any, facilitator: SyncFakeFacilitator | None = None, **kwargs: Any) -> PaymentWSGIMiddleware:
    routes = kwargs.pop("routes", {"GET /paid": "$0.001", "POST /paid": "$0.001", "/stream": "$0.001"})
    return PaymentWSGIMiddleware(
        app, routes=routes, pay_to=PAY_TO, network=NETWORK, facilitator=facilitator or SyncFakeFacilitator(), **kwargs
    )


@dataclass
class Served:
    status: int
    headers: dict[str, str]
    body: bytes
    events: list[Any] = field(default_factory=list)


def serve(
    app: Any,
    path: str = "/paid",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    events: list[Any] | None = None,
    content_length: bool = True,
) -> Served:
    """Call ``app`` the way a PEP 3333 server does; ``events`` records the order of what the server saw."""
    events = events if events is not None else []
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
    }
    if content_length:
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ["wsgi.input_terminated"] = True
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    state: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and state.get("sent"):
            raise exc_info[1].with_traceback(exc_info[2])
        state["status"], state["headers"] = status, response_headers
        events.append(("start", status))

        def write(data: bytes) -> None:
            state["sent"] = True
            events.append(("sent", data))
            chunks.append(data)

        return write

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        for chunk in result:
            if chunk:
                assert "status" in state, "a body chunk came before start_response"
                state["sent"] = True
                events.append(("sent", chunk))
                chunks.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Served(
        int(state["status"].split()[0]), {k.lower(): v for k, v in state["headers"]}, b"".join(chunks), events
    )
