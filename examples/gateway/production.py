"""The gateway built from operator :class:`~.settings.Settings`: paid when ``pay_to`` and a facilitator are set.

``python -m examples.gateway`` uses :func:`build_app`; several uvicorn workers use the factory, which reads the
settings from ``$GATEWAY_CONFIG`` and the environment in each worker::

    GATEWAY_CONFIG=/etc/x402-gateway/gateway.toml \\
        uvicorn --factory examples.gateway.production:create --workers 4 --no-proxy-headers
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.applications import Starlette

from x402_middleware.facilitator import Facilitator
from x402_middleware.stores import PaymentStore

from .app import create_app
from .catalog import DEFAULT_CATALOG, EndpointSpec
from .config import GatewayConfig
from .paid import create_paid_app
from .settings import Settings, configure_logging, load_settings

logger = logging.getLogger(__name__)


def gateway_config(settings: Settings, *, pools: Mapping[str, tuple[EndpointSpec, ...]] | None = None) -> GatewayConfig:
    """The app's :class:`~.config.GatewayConfig` for these settings (``pools`` replaces the catalog's, e.g. the emulator)."""
    return GatewayConfig(
        catalog=settings.catalog or DEFAULT_CATALOG,
        pools=pools,
        catalog_rate_limit=settings.catalog_rate_limit,
        health_rate_limit=settings.health_rate_limit,
        trusted_proxies=settings.trusted_proxies,
        bedrock=settings.bedrock,  # from the file or the environment; None when no AWS key is set in either
        billing=settings.billing,
    )


def facilitator_of(settings: Settings) -> Facilitator:
    """A remote facilitator (``url`` + optional Bearer ``token``) or the self-hosted on-chain one (``rpc_url`` + keys)."""
    if settings.facilitator_keys:
        from x402_middleware.facilitator import OnChainFacilitator

        assert settings.facilitator_rpc_url is not None  # load_settings checks it
        return OnChainFacilitator(settings.facilitator_rpc_url, settings.facilitator_keys, network=settings.networks[0])
    from x402_middleware import HTTPFacilitator

    assert settings.facilitator_url is not None
    headers = {"Authorization": f"Bearer {settings.facilitator_token}"} if settings.facilitator_token else None
    return HTTPFacilitator(settings.facilitator_url, headers=headers)


def facilitator_address(settings: Settings, facilitator: Facilitator) -> str | None:
    """The facilitator's ``upto`` settling address: the setting, else the self-hosted facilitator's own."""
    if settings.facilitator_address is not None:
        return settings.facilitator_address
    address = getattr(facilitator, "address", None)  # OnChainFacilitator
    return address if isinstance(address, str) else None


def payment_store(redis_url: str | None) -> PaymentStore | None:
    """The shared :class:`RedisStore` at ``redis_url``, or ``None`` (the middleware's per-process memory), said so."""
    if redis_url is None:
        logger.warning(
            "[gateway] warning: payments are remembered per process (no shared store): run one worker, or set "
            "redis_url (GATEWAY_REDIS_URL, --redis-url) so that replicas never serve one payment twice"
        )
        return None
    from x402_middleware.stores.redis import RedisStore

    logger.info("payment store: Redis (fails closed: 503 store_unavailable while it is unreachable)")
    return RedisStore.from_url(redis_url)


def build_app(settings: Settings, config: GatewayConfig | None = None) -> Starlette:
    """The gateway app: with x402 payment when ``settings.paid``, else free (a warning says so)."""
    config = config if config is not None else gateway_config(settings)
    if not settings.paid:
        if settings.pay_to is not None:
            logger.warning("[gateway] pay_to is set but no facilitator: serving WITHOUT payment")
        return create_app(config)
    assert settings.pay_to is not None
    facilitator = facilitator_of(settings)
    return create_paid_app(
        config,
        pay_to=settings.pay_to,
        network=settings.networks,
        facilitator=facilitator,
        store=payment_store(settings.redis_url),
        facilitator_address=facilitator_address(settings, facilitator),
    )


def create() -> Starlette:
    """uvicorn ``--factory`` entry point: settings from ``$GATEWAY_CONFIG`` and the environment, real upstreams."""
    settings = load_settings()
    configure_logging(settings)
    return build_app(settings)
