"""x402_middleware: charge per request in USDC over x402 (HTTP 402 Payment Required).

Quick start::

    from x402_middleware import PaymentMiddleware, HTTPFacilitator

    app = PaymentMiddleware(app, routes={"GET /weather": "$0.001"}, pay_to="0xYourAddress",
                            network="eip155:84532", facilitator=HTTPFacilitator())
"""

from __future__ import annotations

from ._exceptions import (
    ConfigurationError,
    FacilitatorError,
    InvalidPaymentError,
    MalformedPaymentError,
    PaymentClientError,
    PricingError,
    SpendLimitError,
    UnpriceableRequestError,
    X402Error,
)
from ._gate import RouteConfig
from .asgi import PaymentMiddleware, settle_on_2xx
from .client import X402Auth, settlement_of
from .facilitator import Facilitator, HTTPFacilitator, SyncFacilitator, SyncHTTPFacilitator
from .models import Payment, PaymentPayload, PaymentRequirements, ResourceInfo, SettleResult, VerifyResult
from .networks import Asset, Network, get_network, register_network
from .pricing import (
    FixedPrice,
    LLMQuote,
    PaymentOption,
    PaymentOptions,
    PaymentRequest,
    RouteTable,
    TokenAmount,
    TokenQuote,
)
from .stores import InMemoryStore, PaymentStore, SyncPaymentStore
from .transport import AsyncHTTP1Transport
from .wsgi import PaymentWSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "Asset",
    "AsyncHTTP1Transport",
    "ConfigurationError",
    "Facilitator",
    "FacilitatorError",
    "FixedPrice",
    "HTTPFacilitator",
    "InMemoryStore",
    "InvalidPaymentError",
    "LLMQuote",
    "MalformedPaymentError",
    "Network",
    "Payment",
    "PaymentClientError",
    "PaymentMiddleware",
    "PaymentOption",
    "PaymentOptions",
    "PaymentPayload",
    "PaymentRequest",
    "PaymentRequirements",
    "PaymentStore",
    "PaymentWSGIMiddleware",
    "PricingError",
    "ResourceInfo",
    "RouteConfig",
    "RouteTable",
    "SettleResult",
    "SpendLimitError",
    "SyncFacilitator",
    "SyncHTTPFacilitator",
    "SyncPaymentStore",
    "TokenAmount",
    "TokenQuote",
    "UnpriceableRequestError",
    "VerifyResult",
    "X402Auth",
    "X402Error",
    "__version__",
    "get_network",
    "register_network",
    "settle_on_2xx",
    "settlement_of",
]
