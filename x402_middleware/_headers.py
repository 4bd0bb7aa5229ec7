"""x402 header names and the base64-JSON codec of their values.

Header values are standard base64 (RFC 4648, ``+/`` with ``=`` padding) of
UTF-8 JSON (x402 v2 ``transports-v2/http.md``; v1 ``X-PAYMENT``). Decoding is
strict and size-limited so a hostile header costs little and never raises
anything but :class:`MalformedPaymentError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from . import _json
from ._exceptions import MalformedPaymentError

# Lower-case: ASGI header names are lower-case bytes; HTTP names are case-insensitive.
PAYMENT_REQUIRED = "payment-required"
#: The same value as ``PAYMENT-REQUIRED`` under the name BlockRun's gateway also sends (blockrun-clients.md §2.1).
X_PAYMENT_REQUIRED = "x-payment-required"
PAYMENT_SIGNATURE = "payment-signature"
PAYMENT_RESPONSE = "payment-response"
X_PAYMENT = "x-payment"
X_PAYMENT_RESPONSE = "x-payment-response"
ACCESS_CONTROL_EXPOSE_HEADERS = "access-control-expose-headers"
CACHE_CONTROL = "cache-control"
RETRY_AFTER = "retry-after"

#: Largest encoded payment header accepted. A v2 EOA payload is ~1.2 KB; ERC-6492
#: wrapped signatures can reach a few KB. Anything above is refused before decoding.
MAX_HEADER_BYTES = 16 * 1024

_B64 = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")


def encode_header(value: Any) -> str:
    """Encode a JSON-able value as a compact base64 header value.

    >>> encode_header({"a": 1})
    'eyJhIjoxfQ=='
    """
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.b64encode(raw).decode("ascii")


def decode_header(
    value: str | bytes, *, name: str = PAYMENT_SIGNATURE, max_bytes: int = MAX_HEADER_BYTES, allow_floats: bool = False
) -> dict[str, Any]:
    """Decode a base64-JSON header value into a JSON object.

    Raises :class:`MalformedPaymentError` (never anything else) when the value is
    too large, not standard base64, not UTF-8 JSON, or not a JSON object.
    ``allow_floats`` keeps JSON floats (refused by default) for values that are
    only echoed back, e.g. extension examples in a ``PAYMENT-REQUIRED`` read by the client.
    """
    try:
        raw = value.encode("ascii") if isinstance(value, str) else value
    except UnicodeEncodeError:
        raise MalformedPaymentError(f"{name} header must be ASCII base64") from None
    raw = raw.strip()
    if len(raw) > max_bytes:
        raise MalformedPaymentError(f"{name} header is {len(raw)} bytes; at most {max_bytes} are accepted")
    if not raw:
        raise MalformedPaymentError(f"{name} header is empty; send base64 of the JSON payment payload")
    # Some clients strip the padding; restore it rather than refuse.
    raw += b"=" * (-len(raw) % 4)
    if not _B64.match(raw):
        raise MalformedPaymentError(f"{name} header is not standard base64 (RFC 4648, '+/' alphabet)")
    try:
        decoded = base64.b64decode(raw, validate=True)
        obj = _json.loads(
            decoded.decode("utf-8"),
            parse_float=None if allow_floats else _reject_float,
            parse_constant=_reject_constant,
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedPaymentError(f"{name} header is not base64 of UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedPaymentError(f"{name} header must decode to a JSON object, got {type(obj).__name__}")
    return obj


def _reject_float(text: str) -> Any:
    # x402 amounts and timestamps are strings or integers; a float is a client bug
    # that would silently lose precision, so refuse it outright.
    raise ValueError(f"floating-point number {text!r} is not allowed; send amounts as integer strings")


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")
