"""Backing pools: each model family has an ordered list of upstream endpoints; fail over before any byte is sent.

An endpoint that answers 429 rests for its ``Retry-After`` (or ``endpoint_cooldown``)
for that model. A 5xx, timeout, connection error or an endpoint that cannot serve
the model (401/403/404) moves on to the next endpoint; another 4xx is the caller's
fault and is answered at once. When every endpoint failed:

* all by rate limits -> :class:`~.errors.RateLimited` (Retry-After from the upstreams, else 60 s), and the model
  is *known throttled* until then, so an unpaid probe can get the 429 before any 402;
* otherwise -> :class:`~.errors.UpstreamError` (504 TIMEOUT, 503 MODEL_UNAVAILABLE or 502 UPSTREAM_ERROR).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol, TypeVar

import aiohttp

from .catalog import Catalog, EndpointSpec
from .errors import InvalidRequest, RateLimited, UpstreamError
from .providers import PROVIDERS, BedrockConfig, Call, Endpoint, Provider, Timeouts, UpstreamFailure, UpstreamStream
from .providers.bedrock import ACCESS_KEY_ENV, REGION_ENV, SECRET_KEY_ENV, preload
from .providers.failure import AUTH, CLIENT, CONNECT, RATE_LIMITED, TIMEOUT
from .providers.upstream import Upstream

T = TypeVar("T")


class Routed(Protocol):
    """What failover needs of a model: its id (cooldowns, throttling) and the pool serving it."""

    @property
    def id(self) -> str: ...

    @property
    def pool(self) -> str: ...


class Throttle:
    """Models known to be throttled (every endpoint rate-limited), each until its Retry-After has passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, tuple[float, str]] = {}

    def mark(self, model_id: str, retry_after: int, source: str) -> None:
        self._until[model_id] = (self._clock() + retry_after, source)

    def clear(self, model_id: str) -> None:
        self._until.pop(model_id, None)

    def active(self) -> bool:
        """Cheap check for the hot path: is any model throttled right now?"""
        if not self._until:
            return False
        now = self._clock()
        for model_id in [m for m, (until, _) in self._until.items() if until <= now]:
            del self._until[model_id]
        return bool(self._until)

    def get(self, model_id: str) -> RateLimited | None:
        """The 429 to answer for ``model_id`` now (Retry-After = the time left), or ``None``."""
        entry = self._until.get(model_id)
        if entry is None:
            return None
        left = entry[0] - self._clock()
        if left <= 0:
            del self._until[model_id]
            return None
        return RateLimited(math.ceil(left), entry[1])


def resolve_endpoints(
    family: str, specs: tuple[EndpointSpec, ...], env: Mapping[str, str], bedrock: BedrockConfig | None = None
) -> tuple[Endpoint, ...]:
    """The usable endpoints of a pool: those whose base URL and API key are set (in the spec or ``env``).

    A ``bedrock`` endpoint is usable when AWS credentials and a region are: ``bedrock``, else from ``env``
    (:meth:`BedrockConfig.from_env`); its URL is the spec's, else the configured endpoint URL, else the region's.
    """
    out = []
    for spec in specs:
        if spec.kind == "bedrock":
            aws = bedrock if bedrock is not None else BedrockConfig.from_env(env)
            if aws is None:
                continue
            preload(aws)
            base_url = spec.base_url or env.get(spec.base_url_env or "", "") or aws.base_url
            out.append(
                Endpoint(family, spec.name, spec.kind, base_url, None, "", spec.headers, models=spec.models, aws=aws)
            )
            continue
        base_url = spec.base_url or env.get(spec.base_url_env or "", "")
        api_key = spec.api_key or (env.get(spec.api_key_env) if spec.api_key_env else None)
        if not base_url or (spec.api_key_env and not api_key):
            continue
        out.append(
            Endpoint(family, spec.name, spec.kind, base_url, api_key, spec.auth, spec.headers, spec.max_tokens_field)
        )
    return tuple(out)


def _required_env(spec: EndpointSpec) -> set[str]:
    if spec.kind == "bedrock":
        return {f"{ACCESS_KEY_ENV} + {SECRET_KEY_ENV} + {REGION_ENV}"}
    return {e for e in (spec.api_key_env, spec.base_url_env) if e}


class Pools:
    """Failover over the endpoints of each family, sharing one ``aiohttp.ClientSession``."""

    def __init__(
        self,
        catalog: Catalog,
        client: aiohttp.ClientSession | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        default_retry_after: int = 60,
        endpoint_cooldown: float = 5.0,
        throttle: Throttle | None = None,
        providers: Mapping[str, Provider] = PROVIDERS,
        bedrock: BedrockConfig | None = None,
    ) -> None:
        env = os.environ if env is None else env
        specs = {**catalog.pools, **{k: tuple(v) for k, v in (overrides or {}).items()}}
        self.endpoints = {family: resolve_endpoints(family, s, env, bedrock) for family, s in specs.items()}
        self.required_env = {family: sorted(set().union(*map(_required_env, s))) for family, s in specs.items()}
        self.upstream = Upstream(client)
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.default_retry_after = default_retry_after
        self.endpoint_cooldown = endpoint_cooldown
        self.throttle = throttle if throttle is not None else Throttle()
        self.providers = providers
        self._cooling: dict[tuple[str, str, str], float] = {}  # (family, endpoint, model) -> monotonic deadline

    def available(self, model: Routed) -> bool:
        return bool(self.endpoints.get(model.pool))

    def status(self) -> dict[str, Any]:
        """For health endpoints: endpoint names per family and what is cooling down (no upstream call)."""
        now = time.monotonic()
        return {
            "pools": {f: [e.name for e in eps] for f, eps in self.endpoints.items() if eps},
            "cooling": [
                {"family": f, "endpoint": e, "model": m, "seconds": math.ceil(t - now)}
                for (f, e, m), t in self._cooling.items()
                if t > now
            ],
        }

    async def complete(self, call: Call, trace: MutableMapping[str, Any] | None = None) -> dict[str, Any]:
        """A canonical completion from the first endpoint that answers."""
        return await self.failover(call.model, lambda p, e: p.complete(self.upstream, e, call, self.timeouts), trace)

    async def open_stream(self, call: Call, trace: MutableMapping[str, Any] | None = None) -> UpstreamStream:
        """An accepted stream (2xx + first chunk) from the first endpoint that delivers one."""
        return await self.failover(call.model, lambda p, e: p.stream(self.upstream, e, call, self.timeouts), trace)

    async def failover(
        self,
        model: Routed,
        attempt: Callable[[Provider, Endpoint], Awaitable[T]],
        trace: MutableMapping[str, Any] | None = None,
    ) -> T:
        """``attempt`` on the endpoints of ``model.pool`` in order, with the cooldowns and the 429/5xx rules above.

        Chat calls go through :meth:`complete`/:meth:`open_stream`; media calls (``media/upstream.py``) bring
        their own ``attempt``.
        """
        endpoints = self.endpoints.get(model.pool, ())
        if not endpoints:
            needed = " or ".join(self.required_env.get(model.pool, [])) or "an endpoint"
            raise UpstreamError(
                f"{model.id} is not available: no upstream is configured (set {needed})",
                source=model.pool,
                status=503,
                code="MODEL_UNAVAILABLE",
            )
        trace = trace if trace is not None else {}
        attempts: list[str] = trace.setdefault("attempts", [])
        failures: list[UpstreamFailure] = []
        for endpoint in endpoints:
            key = (model.pool, endpoint.name, model.id)
            resting = self._cooling.get(key, 0.0) - time.monotonic()
            if resting > 0:
                failures.append(
                    UpstreamFailure(
                        RATE_LIMITED, "cooling down", retry_after=math.ceil(resting), endpoint=endpoint.name
                    )
                )
                attempts.append(f"{endpoint.name}:cooling")
                continue
            started = time.perf_counter()
            try:
                result = await attempt(self.providers[endpoint.kind], endpoint)
            except UpstreamFailure as failure:
                attempts.append(f"{endpoint.name}:{failure.status or failure.kind}")
                if failure.kind == CLIENT:
                    raise _client_error(failure, model) from None
                if failure.kind == RATE_LIMITED:
                    self._cooling[key] = time.monotonic() + (failure.retry_after or self.endpoint_cooldown)
                failures.append(failure)
                continue
            attempts.append(f"{endpoint.name}:ok")
            trace["upstream"] = endpoint.name
            trace["upstream_ms"] = round((time.perf_counter() - started) * 1000, 2)
            self._cooling.pop(key, None)
            self.throttle.clear(model.id)
            return result
        raise self._exhausted(model, failures)

    def _exhausted(self, model: Routed, failures: list[UpstreamFailure]) -> RateLimited | UpstreamError:
        debug = "; ".join(f"{f.endpoint}: {f.kind}" + (f" {f.status}" if f.status else "") for f in failures)
        others = [f for f in failures if f.kind != RATE_LIMITED]
        if not others:
            hints = [f.retry_after for f in failures if f.retry_after]
            retry_after = min(hints) if hints else self.default_retry_after
            self.throttle.mark(model.id, retry_after, model.pool)
            return RateLimited(
                retry_after,
                model.pool,
                f"Rate limited: every upstream for {model.id} is busy; retry after {retry_after}s or use another model",
            )
        last = others[-1]
        if last.kind == TIMEOUT:
            return UpstreamError(
                f"The upstream for {model.id} timed out", source=model.pool, status=504, code="TIMEOUT", debug=debug
            )
        if last.kind in (CONNECT, AUTH):
            return UpstreamError(
                f"{model.id} is temporarily unavailable; try again or use another model",
                source=model.pool,
                status=503,
                code="MODEL_UNAVAILABLE",
                debug=debug,
            )
        return UpstreamError(
            f"The upstream for {model.id} failed; try again or use another model",
            source=model.pool,
            status=502,
            code="UPSTREAM_ERROR",
            debug=debug,
        )


def _client_error(failure: UpstreamFailure, model: Routed) -> InvalidRequest:
    text = failure.message.lower()
    code = "CONTEXT_LENGTH_EXCEEDED" if "context" in text and ("length" in text or "too long" in text) else None
    status = 413 if failure.status == 413 else 400
    return InvalidRequest(f"{model.id} rejected the request: {failure.message}", status=status, code=code)
