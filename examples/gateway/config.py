"""Gateway configuration: one frozen object, built in code or from the environment.

::

    config = GatewayConfig()                                        # bundled catalog, real upstreams from env keys
    config = GatewayConfig(pools=emulator_pools("http://127.0.0.1:8787"))   # every family -> the emulator
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .catalog import DEFAULT_CATALOG, SETTLEMENTS, Catalog, EndpointSpec, load_catalog
from .providers.base import Timeouts
from .providers.bedrock import BedrockConfig


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests per ``window`` seconds per client IP."""

    limit: int
    window: float


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway app needs. ``pools`` replaces the catalog's pools for the families it names."""

    catalog: Catalog | str | Path = DEFAULT_CATALOG
    pools: Mapping[str, Sequence[EndpointSpec]] | None = None
    env: Mapping[str, str] | None = None  # where API keys are read; os.environ when None
    # AWS credentials and region for the pools' bedrock endpoints; None: from env (AWS_ACCESS_KEY_ID, ...)
    bedrock: BedrockConfig | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    default_retry_after: int = 60  # Retry-After of a pool-exhaustion 429 when no upstream gave one
    endpoint_cooldown: float = 5.0  # seconds an endpoint rests after a 429 without Retry-After
    catalog_rate_limit: RateLimit = RateLimit(100, 3600.0)  # /v1/models and /api/pricing
    health_rate_limit: RateLimit = RateLimit(60, 60.0)  # /api/health and /api/health/*
    # Reverse proxies (IPs or CIDRs) whose X-Forwarded-For names the client for the per-IP limits; from anyone
    # else the header is ignored (a client could pick its own IP). See client_ip().
    trusted_proxies: tuple[str, ...] = ()
    expose_upstream: bool = True  # X-Gateway-Upstream: the endpoint that served the call
    metrics: bool = True  # GET /metrics (Prometheus text); expose it to your scraper only
    # Largest request body, also the paid gateway's pricing cap (see README "Request size"): 2 MiB holds a long
    # conversation plus three or four images in base64 at the resolution the vision models actually use.
    max_body_bytes: int = 2 * 1024 * 1024
    #: How paid chat calls are settled unless a model's catalog entry says (``settle``): ``exact`` (the quote) or
    #: ``usage`` (x402 ``upto``: the quote is the maximum, the upstream's reported usage is charged).
    billing: str = "exact"
    http_client: aiohttp.ClientSession | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        try:
            networks = tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc} (give IPs or CIDRs such as 10.0.0.0/8)") from None
        object.__setattr__(self, "_proxies", networks)
        if self.billing not in SETTLEMENTS:
            raise ValueError(f"billing must be one of {', '.join(SETTLEMENTS)}, got {self.billing!r}")
        if self.default_retry_after < 1:
            raise ValueError("default_retry_after must be at least 1 second")
        for name in ("catalog_rate_limit", "health_rate_limit"):
            rl = getattr(self, name)
            if rl.limit < 1 or rl.window <= 0:
                raise ValueError(f"{name} needs limit >= 1 and window > 0, got {rl!r}")

    def load_catalog(self) -> Catalog:
        return self.catalog if isinstance(self.catalog, Catalog) else load_catalog(self.catalog)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client address for per-IP limits: ``peer``, unless it is a trusted proxy that sent X-Forwarded-For.

        Then the header is read from the right (each proxy appends the address it saw) and the first hop that is
        not a trusted proxy is the client; hops left of it were written by the client and are never believed::

            GatewayConfig(trusted_proxies=("10.0.0.0/8",)).client_ip("10.0.0.5", "6.6.6.6, 203.0.113.7")
            # '203.0.113.7'
        """
        proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = getattr(self, "_proxies", ())
        if not proxies or not forwarded_for or not _within(peer, proxies):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not _within(hop, proxies):
                return hop
        return hops[0] if hops else peer


def _within(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


_KIND_BASE = {"openai": "/v1", "anthropic": "", "gemini": ""}


def emulator_pools(
    url: str,
    catalog: Catalog | None = None,
    *,
    endpoints: Sequence[str] = ("default",),
    api_key: str = "emulator",
    bedrock: bool = False,
    **extra: Any,
) -> dict[str, tuple[EndpointSpec, ...]]:
    """Point every pool of ``catalog`` at the emulator at ``url``, keeping each family's wire format.

    With ``endpoints=("a", "b")`` each family gets two endpoints (``/_ep/a``, ``/_ep/b``) so failover can
    be exercised against one emulator; ``"default"`` means the emulator's root. With ``bedrock=True`` a pool
    whose catalog entry has a Bedrock endpoint gets one first, at ``/_ep/bedrock`` with the catalog's model
    map; give the gateway the emulator's test keys (``emulator/_bedrock.py``) as ``GatewayConfig(bedrock=...)``.
    """
    catalog = catalog if catalog is not None else load_catalog()
    pools: dict[str, tuple[EndpointSpec, ...]] = {}
    for family, specs in catalog.pools.items():
        # the emulator's Bedrock signs with its own credentials: only with bedrock=True, below
        kind = next((spec.kind for spec in specs if spec.kind != "bedrock"), "anthropic")
        pools[family] = tuple(
            EndpointSpec(
                name=name if name != "default" else f"emulator-{family}",
                kind=kind,
                base_url=url.rstrip("/") + ("" if name == "default" else f"/_ep/{name}") + _KIND_BASE[kind],
                api_key=api_key,
                **extra,
            )
            for name in endpoints
        )
        on_bedrock = [spec for spec in specs if spec.kind == "bedrock"]
        if bedrock and on_bedrock:
            spec = on_bedrock[0]
            first = EndpointSpec("bedrock", "bedrock", base_url=url.rstrip("/") + "/_ep/bedrock", models=spec.models)
            pools[family] = (first, *pools[family])
    return pools
