"""Pure request building and response parsing for the facilitator HTTP API (no I/O).

Shared by the async and sync HTTP clients (``../shared/docs/x402-protocol.md`` §5)::

    POST {base}/verify  {"x402Version", "paymentPayload", "paymentRequirements"}
    POST {base}/settle  (same body)
    GET  {base}/supported
"""

from __future__ import annotations

from typing import Any

from .._exceptions import FacilitatorError
from .._json import loads as untrusted_loads
from ..models import PaymentPayload, PaymentRequirements, SettleResult, VerifyResult

#: Largest facilitator reply read; anything bigger is an error, not a payment decision.
MAX_RESPONSE_BYTES = 1 << 20


def request_body(payload: PaymentPayload, requirements: PaymentRequirements) -> dict[str, Any]:
    """The JSON body of ``/verify`` and ``/settle``; v1 payloads travel with v1 requirements."""
    return {
        "x402Version": payload.x402_version,
        "paymentPayload": dict(payload.raw),
        "paymentRequirements": requirements.to_wire(payload.x402_version),
    }


def _json(status: int, content: bytes, what: str) -> dict[str, Any]:
    if len(content) > MAX_RESPONSE_BYTES:
        raise FacilitatorError(f"facilitator {what} reply is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        data = untrusted_loads(content)
    except (ValueError, UnicodeDecodeError):
        snippet = content[:200].decode("utf-8", "replace")
        raise FacilitatorError(f"facilitator {what} answered HTTP {status} with non-JSON: {snippet!r}") from None
    if not isinstance(data, dict):
        raise FacilitatorError(f"facilitator {what} answered HTTP {status} with JSON that is not an object")
    return data


def parse_verify(status: int, content: bytes) -> VerifyResult:
    """Parse a ``/verify`` reply. A non-2xx reply carrying ``isValid`` is still an answer (TS facilitators do this)."""
    data = _json(status, content, "/verify")
    if not isinstance(data.get("isValid"), bool):
        raise FacilitatorError(f"facilitator /verify answered HTTP {status} without a boolean isValid: {data!r:.200}")
    return VerifyResult.from_wire(data)


def parse_settle(status: int, content: bytes) -> SettleResult:
    """Parse a ``/settle`` reply. ``success`` must be literally ``true`` to count, and must come with a transaction."""
    data = _json(status, content, "/settle")
    if not isinstance(data.get("success"), bool):
        raise FacilitatorError(f"facilitator /settle answered HTTP {status} without a boolean success: {data!r:.200}")
    result = SettleResult.from_wire(data)
    if result.success and (not 200 <= status < 300 or not result.transaction):
        # A "success" body on an error status, or without a transaction hash, is not proof of payment.
        raise FacilitatorError(
            f"facilitator /settle answered HTTP {status} with an unconvincing success: {data!r:.200}"
        )
    return result


def parse_supported(status: int, content: bytes) -> dict[str, Any]:
    """Parse a ``/supported`` reply."""
    if not 200 <= status < 300:
        raise FacilitatorError(f"facilitator /supported answered HTTP {status}")
    data = _json(status, content, "/supported")
    if not isinstance(data.get("kinds"), list):
        raise FacilitatorError("facilitator /supported reply has no 'kinds' list")
    return data
