"""Classifying upstream error responses: failure kind, message and retry delay, for every provider's envelope."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from x402_middleware.wire import loads_untrusted

from .failure import AUTH, CLIENT, PROTOCOL, RATE_LIMITED, SERVER, TIMEOUT, UpstreamFailure

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?\Z")


def failure_from_response(status: int, headers: Mapping[str, str], content: bytes, endpoint: str) -> UpstreamFailure:
    """Classify an upstream error response; keeps its message and any retry delay it gave."""
    try:
        body: Any = loads_untrusted(content)
    except ValueError:
        body = None
    message = _error_message(body) or content[:200].decode("utf-8", "replace") or f"HTTP {status}"
    retry_after = (
        parse_retry_after(headers.get("retry-after"))
        or _gemini_retry_delay(body)
        or _openai_reset(headers.get("x-ratelimit-reset-requests"))
    )
    if status == 429:
        kind = RATE_LIMITED
    elif status in (401, 403, 404):
        kind = AUTH  # this endpoint cannot serve the model (key, region, deployment): another one may
    elif status == 408:
        kind = TIMEOUT
    elif status >= 500:
        kind = SERVER  # includes Anthropic's 529 overloaded_error
    elif status >= 400:
        kind = CLIENT
    else:
        kind = PROTOCOL
    return UpstreamFailure(kind, message[:500], status=status, retry_after=retry_after, endpoint=endpoint)


def parse_retry_after(value: str | None) -> int | None:
    """``Retry-After`` as whole seconds (delta-seconds or an HTTP date), rounded up; ``None`` if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return max(1, math.ceil(seconds))


def _gemini_retry_delay(body: Any) -> int | None:
    # Gemini puts the delay in error.details[] as google.rpc.RetryInfo {"retryDelay": "37s"}.
    if not isinstance(body, Mapping) or not isinstance(body.get("error"), Mapping):
        return None
    for detail in body["error"].get("details") or ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("RetryInfo"):
            return parse_retry_after(str(detail.get("retryDelay", "")).removesuffix("s"))
    return None


def _error_message(body: Any) -> str:
    if not isinstance(body, Mapping):
        return ""
    error = body.get("error")
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return str(body.get("message") or "")


def _openai_reset(value: str | None) -> int | None:
    # OpenAI's x-ratelimit-reset-requests is a Go duration such as "1s", "6m0s" or "250ms".
    m = _DURATION.match(value.strip()) if value else None
    if m is None or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return max(1, math.ceil(h * 3600 + mi * 60 + s + ms / 1000))
