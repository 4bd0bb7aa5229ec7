"""x402 wire helpers for apps and tools built on the middleware: the header codec and JSON for untrusted input.

- :func:`decode_header` / :func:`encode_header`: the base64-JSON values of the x402 headers
  (``PAYMENT-REQUIRED``, ``PAYMENT-SIGNATURE``, ``PAYMENT-RESPONSE``, v1 ``X-PAYMENT``...), decoded strictly
  and size-limited, exactly as the middleware reads them.
- :func:`loads_untrusted`: ``json.loads`` that refuses deep nesting with :class:`JSONTooDeepError` before the
  C parser can overflow the stack (importing eth-account raises the recursion limit to 100,000).

>>> decode_header(encode_header({"x402Version": 2}))
{'x402Version': 2}
>>> loads_untrusted("[" * 300)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
x402_middleware._exceptions.JSONTooDeepError: the JSON nests arrays/objects more than 256 levels deep; ...
"""

from __future__ import annotations

from ._exceptions import JSONTooDeepError, MalformedPaymentError
from ._headers import (
    MAX_HEADER_BYTES,
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    X_PAYMENT_RESPONSE,
    decode_header,
    encode_header,
)
from ._json import MAX_DEPTH as MAX_JSON_DEPTH
from ._json import check_depth as check_json_depth
from ._json import loads as loads_untrusted

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "PAYMENT_REQUIRED",
    "PAYMENT_RESPONSE",
    "PAYMENT_SIGNATURE",
    "X_PAYMENT",
    "X_PAYMENT_RESPONSE",
    "JSONTooDeepError",
    "MalformedPaymentError",
    "check_json_depth",
    "decode_header",
    "encode_header",
    "loads_untrusted",
]
