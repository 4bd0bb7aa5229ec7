"""x402_middleware: charge per request in USDC over x402 (HTTP 402 Payment Required).

Quick start::

    from x402_middleware import PaymentMiddleware, HTTPFacilitator

    app = PaymentMiddleware(app, routes={"GET /weather": "$0.001"}, pay_to="0xYourAddress",
                            network="eip155:84532", facilitator=HTTPFacilitator())

Pay for what you use: ``RouteConfig(price="$0.10", scheme="upto")`` and ``charge(request, "$0.004")`` in the
handler (:mod:`x402_middleware.usage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ConfigurationError,
    FacilitatorError,
    InvalidPaymentError,
    JSONTooDeepError,
    MalformedPaymentError,
    PaymentClientError,
    PricingBodyTooLargeError,
    PricingError,
    SpendLimitError,
    StoreUnavailableError,
    UnpriceableRequestError,
    X402Error,
)

if TYPE_CHECKING:
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
        Priced,
        RouteTable,
        TokenAmount,
        TokenQuote,
    )
    from .stores import InMemoryStore, PaymentStore, SyncPaymentStore
    from .usage import Served, charge
    from .wsgi import PaymentWSGIMiddleware

# Every other public name is imported from its module on first use (PEP 562), so that
# ``from x402_middleware import PaymentMiddleware`` loads the ASGI path only: not httpx (the client, the HTTP
# facilitator), not the WSGI shell. Keep this map and the imports above in step with __all__
# (tests/test_public_api.py checks all three).
_LAZY = {
    "RouteConfig": "._gate",
    "PaymentMiddleware": ".asgi",
    "settle_on_2xx": ".asgi",
    "X402Auth": ".client",
    "settlement_of": ".client",
    "Facilitator": ".facilitator",
    "HTTPFacilitator": ".facilitator",
    "SyncFacilitator": ".facilitator",
    "SyncHTTPFacilitator": ".facilitator",
    "Payment": ".models",
    "PaymentPayload": ".models",
    "PaymentRequirements": ".models",
    "ResourceInfo": ".models",
    "SettleResult": ".models",
    "VerifyResult": ".models",
    "Asset": ".networks",
    "Network": ".networks",
    "get_network": ".networks",
    "register_network": ".networks",
    "FixedPrice": ".pricing",
    "LLMQuote": ".pricing",
    "PaymentOption": ".pricing",
    "PaymentOptions": ".pricing",
    "PaymentRequest": ".pricing",
    "Priced": ".pricing",
    "RouteTable": ".pricing",
    "TokenAmount": ".pricing",
    "TokenQuote": ".pricing",
    "InMemoryStore": ".stores",
    "PaymentStore": ".stores",
    "SyncPaymentStore": ".stores",
    "Served": ".usage",
    "charge": ".usage",
    "PaymentWSGIMiddleware": ".wsgi",
}


# Hidden from type checkers: they read the TYPE_CHECKING imports, and a visible module __getattr__ would make
# mypy accept any name imported from here.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module, __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "Asset",
    "ConfigurationError",
    "Facilitator",
    "FacilitatorError",
    "FixedPrice",
    "HTTPFacilitator",
    "InMemoryStore",
    "InvalidPaymentError",
    "JSONTooDeepError",
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
    "Priced",
    "PricingBodyTooLargeError",
    "PricingError",
    "ResourceInfo",
    "RouteConfig",
    "RouteTable",
    "Served",
    "SettleResult",
    "SpendLimitError",
    "StoreUnavailableError",
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
    "charge",
    "get_network",
    "register_network",
    "settle_on_2xx",
    "settlement_of",
]
