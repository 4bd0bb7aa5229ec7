"""Errors the gateway answers with, and their wire shapes (blockrun-clients.md §3.5).

::

    GatewayError                      OpenAI envelope, ``code``/``message`` mirrored at the top level
     +-- InvalidRequest               400 INVALID_REQUEST_BODY (CONTEXT_LENGTH_EXCEEDED, ...)
     |    +-- UnknownModel            400, ``{"error": "Unknown model: X. Try one of: ..."}``
     +-- UpstreamError                502/503/504 (or an upstream 4xx passed on), no settlement
     +-- RateLimited                  429 + Retry-After + X-RateLimit-Source, ``{"error": "Rate limited", ...}``

Every one of them is a non-2xx answer, so the payment middleware never settles it.
"""

from __future__ import annotations

import json
from typing import Any


class GatewayError(Exception):
    """An error answered to the caller; ``status``, ``code`` and ``type`` pick the HTTP status and envelope."""

    status = 500
    code = "INTERNAL_ERROR"
    type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        debug: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if type is not None:
            self.type = type
        self.param = param
        self.debug = debug

    def body(self) -> dict[str, Any]:
        """The JSON body: an OpenAI error object with ``code`` and ``message`` copied to the top level."""
        body: dict[str, Any] = {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param},
            "code": self.code,
            "message": self.message,
        }
        if self.debug:
            body["debug"] = self.debug
        return body

    def headers(self) -> dict[str, str]:
        return {}

    def render(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=True, separators=(",", ":")).encode()


class InvalidRequest(GatewayError):
    """The request body is wrong; the caller must change it (never retried, never charged)."""

    status = 400
    code = "INVALID_REQUEST_BODY"
    type = "invalid_request_error"


class UnknownModel(InvalidRequest):
    """The model id is not in the catalog. The body's ``error`` is a plain string, as BlockRun sends it."""

    code = "UNKNOWN_MODEL"

    def __init__(self, model: Any, known: list[str]) -> None:
        hint = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        super().__init__(f"Unknown model: {str(model)[:100]}. Try one of: {hint}", param="model")

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "message": self.message, "code": self.code}


class UpstreamError(GatewayError):
    """Every upstream endpoint of the pool failed (not only by rate limits), or one refused the request (4xx).

    ``source`` is the pool (model family) that failed.
    """

    status = 502
    code = "UPSTREAM_ERROR"

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int = 502,
        code: str = "UPSTREAM_ERROR",
        type: str = "api_error",
        debug: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, type=type, debug=debug)
        self.source = source

    def body(self) -> dict[str, Any]:
        return {**super().body(), "source": self.source}


class RateLimited(GatewayError):
    """Every endpoint of the pool is rate-limited: 429 with ``Retry-After`` so SDK fallbacks move on."""

    status = 429
    code = "RATE_LIMITED"
    type = "rate_limit_error"

    def __init__(self, retry_after: int, source: str, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        self.source = source
        super().__init__(
            message
            or f"Rate limited by the {source} upstream pool; retry after {self.retry_after}s or use another model"
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": "Rate limited",
            "message": self.message,
            "code": self.code,
            "type": self.type,
            "source": self.source,
            "retry_after_seconds": self.retry_after,
        }

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), "X-RateLimit-Source": self.source}
