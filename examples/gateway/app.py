"""The gateway's HTTP app, without payment: ``create_app(config) -> Starlette``.

Routes (each inference/model route under both ``/v1`` and ``/api/v1``):

* ``POST /v1/chat/completions``: OpenAI Chat Completions, JSON or SSE;
* ``POST /v1/messages``: Anthropic Messages for any model, JSON or SSE;
* ``GET /v1/models``, ``GET /api/pricing``: the catalog, 100 requests/hour per IP;
* media (``media/routes.py``): ``POST /v1/images/generations``, ``/v1/audio/generations``, ``/v1/videos/generations``
  (an async job polled at ``GET /v1/videos/generations/{id}``) and their model lists and voices;
* ``GET /api/health`` and ``/api/health/{live,ready,pools}``: 60/minute per IP, never calls an upstream;
* ``GET /metrics``: Prometheus text (``config.metrics``), no rate limit, no payment, never calls an upstream.

An inference request is read, parsed, validated and quoted once, by :class:`~.prepare.PrepareOnce`; the
payment policy and the handler share that :class:`~.service.Prepared`.

Payment composes through ``wrap``: ``create_app(config, wrap=lambda app, gateway: PaymentMiddleware(app, ...))``
puts the payment layer *inside* the request log, ``PrepareOnce`` and the throttle probe (so a known-throttled model answers
an unpaid probe with 429 before any 402) and around the routes. Handlers send no response start before the
upstream accepted the call: for streams, its 2xx and first chunk; any failure is a non-2xx, so it is never settled.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import GatewayConfig
from .errors import GatewayError
from .listing import models_body, pricing_body
from .media.routes import MediaHandlers
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import GatewayMetrics
from .prepare import PrepareOnce, prepared_in
from .probe import ThrottleProbe
from .providers import Native
from .providers.upstream import encode_json
from .ratelimit import SlidingWindow
from .requestlog import RequestLog
from .service import CHAT, MESSAGES, Gateway, Prepared
from .streaming import UpstreamSSEResponse, anthropic_events, native_anthropic_events, openai_events
from .translate.anthropic import to_anthropic_response, usage_from_anthropic

Wrap = Callable[[ASGIApp, Gateway], ASGIApp]
"""Composes another ASGI layer (the payment middleware) around the routes; gets the gateway for its quotes."""


def create_app(
    config: GatewayConfig | None = None, *, gateway: Gateway | None = None, wrap: Wrap | None = None
) -> Starlette:
    """Build the gateway app. ``app.state.gateway`` is the :class:`~.service.Gateway` (quotes, pools, catalog)."""
    gateway = gateway if gateway is not None else Gateway(config)
    h = _Handlers(gateway)
    routes = []
    for prefix in ("/v1", "/api/v1"):
        routes += [
            Route(f"{prefix}/chat/completions", _Inference(h, CHAT), methods=["POST"]),
            Route(f"{prefix}/messages", _Inference(h, MESSAGES), methods=["POST"]),
            Route(f"{prefix}/models", h.models, methods=["GET"]),
        ]
    routes += MediaHandlers(gateway, h.media_limited).routes()
    routes += [
        Route("/api/pricing", h.pricing, methods=["GET"]),
        Route("/api/health", h.health, methods=["GET"]),
        Route("/api/health/{check:path}", h.health, methods=["GET"]),
        Route("/api/v1/health/{check:path}", h.health, methods=["GET"]),
    ]
    metrics = GatewayMetrics() if gateway.config.metrics else None
    if metrics is not None:
        routes.append(Route("/metrics", _metrics_endpoint(metrics), methods=["GET"]))
    middleware = [
        Middleware(RequestLog, metrics=metrics, routes=routes),
        Middleware(PrepareOnce, gateway=gateway),
        Middleware(ThrottleProbe, gateway=gateway),
    ]
    if wrap is not None:
        middleware.append(Middleware(_Wrapped, wrap=wrap, gateway=gateway))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await gateway.aclose()

    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={GatewayError: _gateway_error, HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.gateway = gateway
    app.state.metrics = metrics
    return app


def _metrics_endpoint(metrics: GatewayMetrics) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # Renders counters only: no upstream call, no I/O. Counted under its own route, logged at DEBUG.
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return endpoint


class _Wrapped:
    """Adapts a ``wrap(app, gateway)`` callable to Starlette's middleware list (built once, lazily)."""

    def __init__(self, app: ASGIApp, wrap: Wrap, gateway: Gateway) -> None:
        self.app = wrap(app, gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _Inference:
    """A raw ASGI endpoint for one inference API: no Starlette ``Request`` or per-route exception wrapper per call.

    (Starlette runs an endpoint that is not a function as ASGI.) A ``GatewayError`` it raises still becomes the
    gateway's JSON error: the app's exception handlers sit around the router.
    """

    def __init__(self, handlers: _Handlers, api: str) -> None:
        self.handlers = handlers
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handlers.infer(scope, receive, self.api)
        await response(scope, receive, send)


class _Handlers:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        config = gateway.config
        available = gateway.available_models()
        fees = gateway.catalog.fees
        self._models = models_body(available, gateway.available_media())
        self._pricing = pricing_body(available, fees.gateway_fee_usd, fees.min_charge_usd)
        self._catalog_limit = SlidingWindow(config.catalog_rate_limit.limit, config.catalog_rate_limit.window)
        self._health_limit = SlidingWindow(config.health_rate_limit.limit, config.health_rate_limit.window)
        # the media listings (/v1/{images,video,audio}/models, /v1/audio/voices): the catalog's limit, their own count
        self._media_limit = SlidingWindow(config.catalog_rate_limit.limit, config.catalog_rate_limit.window)
        self._started = time.time()

    async def infer(self, scope: Scope, receive: Receive, api: str) -> Response:
        trace = scope.setdefault("gateway.trace", {})
        prepared = await prepared_in(scope, receive)  # read, parsed and quoted once, by PrepareOnce
        assert isinstance(prepared, Prepared)
        call, model = prepared.call, prepared.call.model
        trace.update(
            api=api,
            model=model.id,
            stream=call.stream,
            price=prepared.quote.amount,
            input_estimate=prepared.quote.input_tokens,
            max_tokens=call.max_tokens,
        )
        started = time.perf_counter()
        if call.stream:
            upstream = await self.gw.pools.open_stream(call, trace)
            trace["first_chunk_ms"] = _ms(started)
            if upstream.native:  # the upstream speaks the caller's format: its events pass through
                events = native_anthropic_events(upstream, model.id, trace)
            elif api == CHAT:
                events = openai_events(upstream, model.id, prepared.include_usage, trace)
            else:
                events = anthropic_events(upstream, model.id, prepared.quote.input_tokens, trace)
            return UpstreamSSEResponse(upstream, events, self._upstream_header(upstream.endpoint))
        result = await self.gw.pools.complete(call, trace)
        # Only the model id is the gateway's (the one the caller asked for); the rest is the upstream's answer.
        result["model"] = model.id
        payload: dict[str, Any]
        if isinstance(result, Native):  # Anthropic in, Anthropic upstream: passed through
            trace["usage"] = usage_from_anthropic(result.get("usage") or {})
            payload = result
        else:
            trace["usage"] = result.get("usage")
            payload = result if api == CHAT else to_anthropic_response(result, model.id)
        # JSONResponse's bytes and headers, with the encoder built once (encode_json)
        return Response(
            encode_json(payload),
            headers=self._upstream_header(trace.get("upstream", "")),
            media_type="application/json",
        )

    async def models(self, request: Request) -> Response:
        return self._limited(request, self._catalog_limit) or _raw_json(self._models)

    async def pricing(self, request: Request) -> Response:
        return self._limited(request, self._catalog_limit) or _raw_json(self._pricing)

    def media_limited(self, request: Request) -> Response | None:
        return self._limited(request, self._media_limit)

    async def health(self, request: Request) -> Response:
        limited = self._limited(request, self._health_limit)
        if limited is not None:
            return limited
        check = request.path_params.get("check", "").strip("/")
        status = self.gw.pools.status()
        ready = bool(status["pools"])
        if check in ("", "live", "liveness"):
            return JSONResponse(
                {
                    "status": "ok",
                    "uptime_s": round(time.time() - self._started),
                    "models": len(self.gw.available_models()),
                }
            )
        if check in ("ready", "readiness"):
            return JSONResponse({"status": "ok" if ready else "unavailable", "ready": ready}, 200 if ready else 503)
        if check == "pools":
            return JSONResponse({"status": "ok", **status})
        raise HTTPException(404, f"unknown health check {check!r}; try live, ready or pools")

    def _limited(self, request: Request, limiter: SlidingWindow) -> Response | None:
        decision = limiter.hit(self._client_ip(request))
        if decision.allowed:
            return None
        return JSONResponse(
            {"error": "Rate limit exceeded"},
            429,
            headers={
                **decision.headers(),
                "Retry-After": str(max(1, int(decision.reset_ms / 1000 - time.time() + 0.999))),
            },
        )

    def _client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        return self.gw.config.client_ip(peer, request.headers.get("x-forwarded-for"))

    def _upstream_header(self, endpoint: str) -> dict[str, str]:
        return {"x-gateway-upstream": endpoint} if self.gw.config.expose_upstream and endpoint else {}


def _raw_json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    trace = request.scope.setdefault("gateway.trace", {})
    trace["error"] = exc.code
    return Response(exc.render(), exc.status, headers=exc.headers(), media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    error = GatewayError(str(exc.detail), status=exc.status_code, code=code, type="invalid_request_error")
    return Response(error.render(), exc.status_code, headers=dict(exc.headers or {}), media_type="application/json")


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception and re-raises it after this response; callers still get the JSON envelope.
    error = GatewayError("The gateway failed to handle this request", status=500, code="INTERNAL_ERROR")
    return Response(error.render(), 500, media_type="application/json")


__all__ = ["Wrap", "create_app"]
