"""A BlockRun-style pay-per-call AI gateway (the non-payment half): OpenAI- and Anthropic-compatible
endpoints over upstream pools with failover, a model catalog with per-call quotes, and an upstream emulator.

::

    from examples.gateway import GatewayConfig, create_app, emulator_pools
    app = create_app(GatewayConfig(pools=emulator_pools("http://127.0.0.1:8787")))
"""

from __future__ import annotations

from .app import Wrap, create_app
from .catalog import Catalog, CatalogError, EndpointSpec, ModelInfo, load_catalog
from .config import GatewayConfig, RateLimit, emulator_pools
from .errors import GatewayError, InvalidRequest, RateLimited, UnknownModel, UpstreamError
from .pricing import describe, price_of, x402_price_policy
from .providers import Timeouts
from .quote import Quote, quote_chat, quote_messages
from .service import INFERENCE_PATHS, Gateway

__all__ = [
    "INFERENCE_PATHS",
    "Catalog",
    "CatalogError",
    "EndpointSpec",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "InvalidRequest",
    "ModelInfo",
    "Quote",
    "RateLimit",
    "RateLimited",
    "Timeouts",
    "UnknownModel",
    "UpstreamError",
    "Wrap",
    "create_app",
    "describe",
    "emulator_pools",
    "load_catalog",
    "price_of",
    "quote_chat",
    "quote_messages",
    "x402_price_policy",
]
