"""The exceptions of x402_middleware, one small tree::

    X402Error
    ├── ConfigurationError      bad settings, raised at start-up (never per request)
    ├── InvalidPaymentError     the client's payment is unusable -> 400/402 with ``reason``
    │   └── MalformedPaymentError   the header itself cannot be decoded -> 400
    ├── FacilitatorError        a facilitator or chain could not be reached or answered nonsense -> 502
    ├── StoreUnavailableError   the payment store (Redis) could not be reached in time -> 503, nothing served
    ├── PricingError            the app's own price function failed -> 500 (its bug, logged)
    ├── UnpriceableRequestError the request cannot be priced (unknown model, bad max_tokens) -> 400 with ``reason``
    │   └── PricingBodyTooLargeError    the body to price is over the pricing cap -> 413
    ├── JSONTooDeepError        untrusted JSON nests too deeply to parse safely (also a ``ValueError``)
    └── PaymentClientError      the paying client cannot or will not pay a 402
        └── SpendLimitError     the price is over a configured cap

Every message says what went wrong and how to fix it.
"""

from __future__ import annotations


class X402Error(Exception):
    """Base class of every error raised by x402_middleware."""


class ConfigurationError(X402Error, ValueError):
    """The middleware, a route, a network or a price was configured wrongly.

    Raised while the app starts, never while serving a request.
    """


class InvalidPaymentError(X402Error):
    """A payment sent by a client cannot be accepted.

    ``reason`` is a stable machine-readable code (the official facilitator's
    strings where one exists, e.g. ``invalid_exact_evm_payload_signature``);
    the message is for humans.
    """

    status_code = 402

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


class MalformedPaymentError(InvalidPaymentError):
    """The payment header is not base64 JSON of the expected shape (HTTP 400)."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__("invalid_payload", message)


class FacilitatorError(X402Error):
    """A facilitator (remote or on-chain) failed to answer usefully; the request is never served."""


class StoreUnavailableError(X402Error):
    """The payment store could not be reached or did not answer in time (a shared store such as Redis).

    The middleware fails closed: a payment it cannot claim is answered 503 ``store_unavailable`` with
    ``Retry-After`` and the app does not run.
    """


class PricingError(X402Error):
    """A price function raised or returned something that is not a price."""


class UnpriceableRequestError(X402Error):
    """A pricing policy refuses to quote this request because of the *client's* input (HTTP 400).

    Raise it from a price function for input the client must fix, such as an
    unknown model or a ``max_tokens`` out of range; any other exception is a
    bug in the price function and answers 500::

        def price(request):
            if request.query.get("size") not in SIZES:
                raise UnpriceableRequestError("invalid_size", f"size must be one of {sorted(SIZES)}")
    """

    status_code = 400

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


class PricingBodyTooLargeError(UnpriceableRequestError):
    """The body of a ``price_body`` route is larger than the middleware's ``max_pricing_body`` (HTTP 413)."""

    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            "request_body_too_large",
            f"this route prices the request body, which must be at most {limit} bytes; send a smaller body "
            f"(the server's operator can raise max_pricing_body)",
        )


class JSONTooDeepError(X402Error, ValueError):
    """Untrusted JSON nests arrays/objects deeper than :data:`x402_middleware._json.MAX_DEPTH`.

    Refused before parsing: the C JSON parser would otherwise overflow the C
    stack (the interpreter's recursion limit does not protect it once a
    dependency such as py_ecc has raised it).
    """


class PaymentClientError(X402Error):
    """The paying client could not pay for a request."""


class SpendLimitError(PaymentClientError):
    """Paying would exceed ``max_amount_per_payment`` or ``max_total_spend``."""
