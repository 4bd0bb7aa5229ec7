"""The WSGI middleware's pricing-body cap: 413 with a JSON reason, decided without reading past the cap."""

from __future__ import annotations

import io
import json
from typing import Any

from tests._sync_facilitator_double import SyncFakeFacilitator
from tests.wsgi._apps import RecordingApp, protect, serve
from x402_middleware import RouteConfig

CAP = 1000


class CountingInput(io.RawIOBase):
    """A ``wsgi.input`` of ``total`` bytes that counts what was read from it."""

    def __init__(self, total: int) -> None:
        self.total, self.taken = total, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.total - self.taken)
        buffer[:n] = b"x" * n
        self.taken += n
        return n


def _priced(**kwargs: Any) -> Any:
    return protect(
        RecordingApp(),
        SyncFakeFacilitator(),
        routes={"POST /llm": RouteConfig(price=lambda r: "$0.001", price_body=True)},
        max_pricing_body=CAP,
        **kwargs,
    )


def _environ_call(mw: Any, stream: CountingInput, length: int | None) -> tuple[str, bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/llm",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
    }
    if length is None:
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(length)
    seen: list[str] = []
    body = b"".join(mw(environ, lambda status, headers, exc_info=None: seen.append(status)))
    return seen[0], body


def test_content_length_over_the_cap_is_413_and_nothing_is_read() -> None:
    stream = CountingInput(16 * 1024 * 1024)
    status, body = _environ_call(_priced(), stream, stream.total)
    assert status.startswith("413") and stream.taken == 0
    answer = json.loads(body)
    assert answer["error"] == "request_body_too_large" and f"at most {CAP} bytes" in answer["message"]


def test_a_terminated_input_over_the_cap_is_413_after_reading_at_most_the_cap_plus_one() -> None:
    stream = CountingInput(16 * 1024 * 1024)
    status, body = _environ_call(_priced(), stream, None)
    assert status.startswith("413") and stream.taken == CAP + 1
    assert json.loads(body)["error"] == "request_body_too_large"
    at_the_cap = json.dumps({"a": "x" * (CAP - 9)}).encode()
    assert len(at_the_cap) == CAP and serve(_priced(), "/llm", method="POST", body=at_the_cap).status == 402


def test_json_nested_too_deep_is_400_with_a_reason() -> None:
    r = serve(_priced(), "/llm", method="POST", body=b"[" * 400 + b"]" * 400)
    assert r.status == 400 and json.loads(r.body)["error"] == "request_body_too_deep"
