"""The framework-neutral heart of the middleware: routes, prices, challenges, payment checks.

Everything here is pure (no I/O) so the ASGI, WSGI and Django shells share it
and stay thin; they add only the awaits or blocking calls to the facilitator
and the store.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, TypeAlias

from . import _headers as H
from ._exceptions import (
    ConfigurationError,
    InvalidPaymentError,
    MalformedPaymentError,
    PricingError,
    UnpriceableRequestError,
)
from ._fingerprint import PAYMENT_IDENTIFIER, PAYMENT_IDENTIFIER_DECLARATION
from .models import (
    PaymentPayload,
    PaymentRequirements,
    ResourceInfo,
    SettleResult,
    VerifyResult,
    parse_payment_payload,
    payment_required_v1,
    payment_required_v2,
)
from .money import parse_usd, to_atomic
from .networks import Asset, Network, check_address, find_network, get_network, networks
from .pricing import FixedPrice, PaymentOption, PaymentRequest, Priced, PricingPolicy, TokenAmount
from .routes import RoutePattern
from .schemes import PaymentScheme, find_scheme, missing_extra, schemes
from .usage import ChargeFunction
from .verify import NO_MATCHING_REQUIREMENTS, match_requirements, verify_locally

logger = logging.getLogger("x402_middleware")

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete response the middleware sends instead of the app's (402, 400, 413, 500, 502, 503)."""

    status: int
    headers: Headers
    body: bytes


#: A recipient: one address, or one per chain family or network when a route takes several
#: (``{"eip155": "0x…", "solana": "<base58>"}``; keys are namespaces, CAIP-2 ids or v1 names).
PayTo: TypeAlias = "str | Mapping[str, str]"

PAYMENT_REQUIRED_ERROR = "Payment required"
V1_PAYMENT_REQUIRED_ERROR = "X-PAYMENT header is required"
PAYMENT_IN_PROGRESS = "payment_in_progress"
_EXPOSE = b"PAYMENT-REQUIRED, X-PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE"
_SIGNATURE, _X_PAYMENT = H.PAYMENT_SIGNATURE.encode(), H.X_PAYMENT.encode()
_PAYMENT_REQUIRED, _X_PAYMENT_REQUIRED = H.PAYMENT_REQUIRED.encode(), H.X_PAYMENT_REQUIRED.encode()


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """A paid route: its pattern, price (fixed or a policy) and how it is described to payers.

    Pass it as a value of the middleware's ``routes`` mapping when a bare price is not enough::

        routes = {"POST /v1/chat": RouteConfig(price=quote, description="Chat completion", mime_type="application/json")}

    ``check_funds`` asks the facilitator whether the payer can pay before the app runs (see
    :class:`~x402_middleware._flow.FundsCheck`); ``None`` takes the middleware's ``check_funds``.
    ``scheme`` is the x402 scheme offered (``exact``; any registered in :mod:`x402_middleware.schemes`), or
    several offered in one 402 in that order (``("exact", "upto")``: clients choose). With ``upto`` the price is
    the **maximum** and the app reports the actual charge with :func:`x402_middleware.charge`, or ``charge``
    computes it from the response (see :mod:`x402_middleware.usage`); ``extra`` goes into every requirement,
    for ``upto`` the facilitator's address (its ``/supported`` lists it)::

        RouteConfig(price="$0.10", scheme="upto", extra={"facilitatorAddress": facilitator_address})
    """

    price: Any = None
    description: str = ""
    mime_type: str = "application/json"
    networks: Sequence[str] | None = None
    pay_to: PayTo | None = None
    max_timeout_seconds: int | None = None
    price_body: bool = False
    check_funds: bool | None = None
    scheme: str | Sequence[str] = "exact"
    charge: ChargeFunction | None = None
    #: merged into the ``extra`` of every requirement built from a plain price (``upto``: the facilitator's
    #: ``{"facilitatorAddress": ...}`` from its ``/supported``)
    extra: Mapping[str, Any] | None = None


class Quoted(NamedTuple):
    """What a dynamic route costs for one request, and the policy's description of it (``None``: the route's)."""

    requirements: tuple[PaymentRequirements, ...]
    description: str | None


@dataclass(frozen=True, slots=True)
class PaidRoute:
    pattern: RoutePattern
    policy: PricingPolicy | None
    fixed: tuple[PaymentRequirements, ...] | None
    options: tuple[tuple[Network, Asset, str, int], ...]
    description: str
    mime_type: str
    price_body: bool
    check_funds: bool
    schemes: tuple[str, ...]
    charge: ChargeFunction | None = None
    extra: Mapping[str, Any] | None = None


class Gate:
    """Pure configuration and decisions shared by every adapter. Built once at start-up."""

    def __init__(
        self,
        *,
        routes: Mapping[str, Any],
        pay_to: PayTo | None,
        network: str | Sequence[str],
        max_timeout_seconds: int = 300,
        resource_url: str | None = None,
        check_funds: bool = False,
        payment_identifier: bool = False,
    ) -> None:
        self.check_funds = check_funds
        # With a journal, the v2 402 declares the payment-identifier extension: clients then name their
        # request, and a retry of it whose response was lost is served again without a new charge.
        self._extensions = {PAYMENT_IDENTIFIER: PAYMENT_IDENTIFIER_DECLARATION} if payment_identifier else None
        nets = [network] if isinstance(network, str) else list(network)
        if not nets:
            raise ConfigurationError("at least one network is required, e.g. network='eip155:8453'")
        self.default_networks = tuple(get_network(n) for n in nets)
        self.pay_to = _pay_to_table(pay_to, "pay_to")
        if max_timeout_seconds <= 0:
            raise ConfigurationError("max_timeout_seconds must be positive")
        self.max_timeout_seconds = max_timeout_seconds
        self.resource_base = resource_url.rstrip("/") if resource_url else None
        if not isinstance(routes, Mapping) or not routes:
            raise ConfigurationError("routes must be a non-empty mapping such as {'GET /weather': '$0.001'}")
        self.routes = tuple(self._build_route(k, v) for k, v in routes.items())
        self._exact: dict[str, list[PaidRoute]] = {}
        self._patterns: list[PaidRoute] = []
        for route in self.routes:
            if route.pattern._exact is not None:
                self._exact.setdefault(route.pattern._exact.rstrip("/") or "/", []).append(route)
            else:
                self._patterns.append(route)

    def _build_route(self, pattern: str, value: Any) -> PaidRoute:
        cfg = value if isinstance(value, RouteConfig) else RouteConfig(price=value)
        if not cfg.description.isascii():
            # TypeScript x402 clients sign the payload, resource included, with btoa, which throws above U+00FF.
            raise ConfigurationError(f"route {pattern!r}: description must be ASCII, got {cfg.description!r}")
        table = _pay_to_table(cfg.pay_to, "pay_to") if cfg.pay_to else self.pay_to
        nets = tuple(get_network(n) for n in cfg.networks) if cfg.networks else self.default_networks
        timeout = cfg.max_timeout_seconds or self.max_timeout_seconds
        offered = _schemes_of(pattern, cfg)
        options = []
        for net in nets:
            if net.asset is None:
                raise ConfigurationError(
                    f"network {net.caip2} has no default asset; register one with register_network()"
                )
            pay_to = _pay_to_of(table, net)
            try:
                for name in offered:
                    _scheme_for(name, net, pay_to)
            except PricingError as exc:
                raise ConfigurationError(f"route {pattern!r}: {exc}") from None
            options.append((net, net.asset, pay_to or "", timeout))
        route = PaidRoute(
            RoutePattern.parse(pattern),
            None,
            None,
            tuple(options),
            cfg.description,
            cfg.mime_type,
            cfg.price_body,
            self.check_funds if cfg.check_funds is None else cfg.check_funds,
            offered,
            cfg.charge,
            dict(cfg.extra) if cfg.extra else None,
        )
        price = cfg.price.price if isinstance(cfg.price, FixedPrice) else cfg.price  # static: priced once, here
        if callable(price):
            return _replace(route, policy=price)
        if price is None:
            raise ConfigurationError(
                f"route {pattern!r} has no price; give '$0.001', a Decimal, TokenAmount or a callable"
            )
        try:
            fixed = self.requirements(route, price)
        except PricingError as exc:
            raise ConfigurationError(f"route {pattern!r}: {exc}") from None
        if not fixed and isinstance(price, (str, Decimal)) and parse_usd(price) > 0:
            # e.g. "$0.0000001" truncates to 0 atomic units: refuse rather than serve the route for free.
            raise ConfigurationError(f"route {pattern!r}: price {price!r} is below the token's smallest unit")
        return _replace(route, fixed=fixed)

    # -- matching --------------------------------------------------------------------------
    def find(self, method: str, path: str) -> tuple[PaidRoute, dict[str, str]] | None:
        """The paid route for a request and its path parameters, or ``None`` (free)."""
        candidates = self._exact.get(path.rstrip("/") or "/")
        if candidates:
            for route in candidates:
                if (
                    route.pattern.method == "*"
                    or route.pattern.method == method
                    or (method == "HEAD" and route.pattern.method == "GET")
                ):
                    return route, {}
        for route in self._patterns:
            params = route.pattern.match(method, path)
            if params is not None:
                return route, params
        return None

    # -- pricing ---------------------------------------------------------------------------
    def price(
        self, route: PaidRoute, request: PaymentRequest, *, allow_async: bool = True
    ) -> Quoted | Awaitable[Quoted]:
        """Run a dynamic route's policy and build its requirements (an awaitable for an async policy).

        Raises :class:`UnpriceableRequestError` (the client's input, 400) or
        :class:`PricingError` (anything else the policy did: a bug, 500).
        """
        assert route.policy is not None, "price() is for dynamic routes; fixed routes have route.fixed"
        try:
            price = route.policy(request)
        except (PricingError, UnpriceableRequestError):
            raise
        except Exception as exc:
            raise PricingError(f"{type(exc).__name__}: {exc}") from exc
        if inspect.isawaitable(price):
            if not allow_async:
                getattr(price, "close", lambda: None)()  # no "never awaited" warning
                raise PricingError(
                    f"the price function of {route.pattern.path} is async; a WSGI or sync Django "
                    "app needs a plain (sync) function"
                )
            return self._price_later(route, price)
        return self.quoted(route, price)

    async def _price_later(self, route: PaidRoute, price: Awaitable[Any]) -> Quoted:
        try:
            value = await price
        except (PricingError, UnpriceableRequestError):
            raise
        except Exception as exc:
            raise PricingError(f"{type(exc).__name__}: {exc}") from exc
        return self.quoted(route, value)

    def quoted(self, route: PaidRoute, price: Any) -> Quoted:
        """A policy's result as requirements, with its per-request description when it returned :class:`Priced`."""
        if isinstance(price, Priced):
            return Quoted(self.requirements(route, price.price), price.description)
        return Quoted(self.requirements(route, price), None)

    def requirements(self, route: PaidRoute, price: Any) -> tuple[PaymentRequirements, ...]:
        """Turn a policy's result into payment requirements; ``()`` means free. Raises :class:`PricingError`."""
        if price is None:
            return ()
        if isinstance(price, (str, Decimal, TokenAmount)):
            return tuple(
                r
                for r in (
                    self._one(scheme, net, asset, pay_to, timeout, price, route.extra or {})
                    for scheme in route.schemes
                    for net, asset, pay_to, timeout in route.options
                )
                if r is not None
            )
        if isinstance(price, Sequence) and all(isinstance(o, PaymentOption) for o in price):
            out = []
            for opt in price:
                net = _network(opt.network)
                asset = opt.asset or net.asset
                if asset is None:
                    raise PricingError(f"network {net.caip2} has no default asset; give PaymentOption(asset=...)")
                pay_to = opt.pay_to or _route_pay_to(route, net) or _pay_to_of(self.pay_to, net) or ""
                timeout = opt.max_timeout_seconds or self.max_timeout_seconds
                _scheme_for(opt.scheme, net, pay_to or None)
                req = self._one(opt.scheme, net, asset, pay_to, timeout, opt.price, opt.extra)
                if req is not None:
                    out.append(req)
            return tuple(out)
        raise PricingError(
            f"a price must be None, '$0.01', a Decimal, TokenAmount or a list of PaymentOption; got {price!r}"
        )

    def _one(
        self, scheme: str, net: Network, asset: Asset, pay_to: str, timeout: int, price: Any, extra: Mapping[str, Any]
    ) -> PaymentRequirements | None:
        if not pay_to:
            raise PricingError("no pay_to address: set pay_to on the middleware, the route or the PaymentOption")
        if isinstance(price, TokenAmount):
            amount, asset = price.amount, price.asset or asset
        elif isinstance(price, (str, Decimal)):
            try:
                amount = to_atomic(parse_usd(price), asset.decimals, exact=False)
            except ConfigurationError as exc:
                raise PricingError(str(exc)) from None
        elif price is None:
            return None
        else:
            raise PricingError(f"unsupported price {price!r}")
        if amount <= 0:
            return None
        return PaymentRequirements(net, asset, amount, pay_to, timeout, scheme, extra=dict(extra) if extra else {})

    def resource(self, route: PaidRoute, scheme: str, host: str, path: str, query: str) -> ResourceInfo:
        base = self.resource_base or f"{scheme}://{host}"
        url = f"{base}{path}" + (f"?{query}" if query else "")
        return ResourceInfo(url, route.description, route.mime_type)

    # -- payments --------------------------------------------------------------------------
    @staticmethod
    def read_payment(headers: Iterable[tuple[bytes, bytes]]) -> PaymentPayload | None:
        """Decode the payment of ``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT`` (v1); ``None`` when absent.

        The payload's ``x402Version`` says which protocol it speaks, not the header's name: BlockRun's
        newer clients send the same v2 payload in both headers, and it is decoded once. Two headers
        with different values are refused, as is a header that is present but unusable
        (:class:`MalformedPaymentError`).
        """
        found: bytes | None = None
        label = ""
        for name, value in headers:
            if name == _SIGNATURE or name == _X_PAYMENT:
                if found is None:
                    found, label = value, ("PAYMENT-SIGNATURE" if name == _SIGNATURE else "X-PAYMENT")
                elif value.strip() != found.strip():
                    raise MalformedPaymentError(
                        "PAYMENT-SIGNATURE and X-PAYMENT carry different payments; send one payment "
                        "(PAYMENT-SIGNATURE for x402 v2), or the same value in both"
                    )
        return None if found is None else parse_payment_payload(H.decode_header(found, name=label))

    @staticmethod
    def check(
        payload: PaymentPayload, requirements: Sequence[PaymentRequirements], now: int | None = None
    ) -> tuple[PaymentRequirements, VerifyResult | None]:
        """Match and verify a payment locally. Raises :class:`InvalidPaymentError` with the reason.

        Returns the matched requirement and ``None`` when only a facilitator can
        tell (e.g. a contract-wallet signature).
        """
        req = match_requirements(payload, requirements)
        if req is None:
            raise InvalidPaymentError(
                NO_MATCHING_REQUIREMENTS,
                "the payment does not match what this route asks for now (price, network, asset or payTo); "
                "request the route again without payment to get the current requirements",
            )
        result = verify_locally(payload, req, now=now)
        if result is not None and not result.is_valid:
            raise InvalidPaymentError(result.invalid_reason or "invalid_payment", result.invalid_message)
        return req, result

    # -- responses -------------------------------------------------------------------------
    def challenge(
        self,
        requirements: Sequence[PaymentRequirements],
        resource: ResourceInfo,
        *,
        error: str = PAYMENT_REQUIRED_ERROR,
        message: str | None = None,
        status: int = 402,
        settlement: SettleResult | None = None,
        x402_version: int = 2,
    ) -> Answer:
        """A 402 (or 400) answer: v2 ``PAYMENT-REQUIRED`` header (and its twin ``X-PAYMENT-REQUIRED``, as BlockRun
        sends it) plus the v1 JSON body, never cached."""
        v2 = payment_required_v2(requirements, resource, error, self._extensions)
        v1_error = V1_PAYMENT_REQUIRED_ERROR if error == PAYMENT_REQUIRED_ERROR else error
        body = payment_required_v1(requirements, resource, v1_error)
        if message:
            body["message"] = message
        encoded = H.encode_header(v2).encode()
        headers: Headers = [(_PAYMENT_REQUIRED, encoded), (_X_PAYMENT_REQUIRED, encoded)]
        if settlement is not None:
            headers.append(_settlement_header(settlement, requirements, x402_version))
        return Answer(status, _json_headers(headers, no_store=True), _dumps(body))

    @staticmethod
    def error(
        status: int, error: str, message: str, *, extra: Mapping[str, Any] | None = None, retry_after: int | None = None
    ) -> Answer:
        """A plain JSON error answer (502 facilitator trouble, 500 pricing bug, 503 settlement not confirmed yet)."""
        headers: Headers = [] if retry_after is None else [(H.RETRY_AFTER.encode(), str(retry_after).encode())]
        return Answer(
            status,
            _json_headers(headers, no_store=True),
            _dumps({"error": error, "message": message, **(extra or {})}),
        )

    @staticmethod
    def settlement_headers(result: SettleResult, requirement: PaymentRequirements, x402_version: int) -> Headers:
        """Headers added to a paid 2xx response: the ``PAYMENT-RESPONSE`` (or v1 ``X-PAYMENT-RESPONSE``)."""
        return [_settlement_header(result, (requirement,), x402_version), (b"access-control-expose-headers", _EXPOSE)]


def _settlement_header(
    result: SettleResult, requirements: Sequence[PaymentRequirements], x402_version: int
) -> tuple[bytes, bytes]:
    network = result.network
    if requirements and x402_version == 1:
        network = requirements[0].network.wire_v1
    elif requirements and not network:
        network = requirements[0].network.caip2
    name = b"x-payment-response" if x402_version == 1 else b"payment-response"
    return name, H.encode_header(result.to_wire(network)).encode()


def _json_headers(headers: Headers, *, no_store: bool) -> Headers:
    headers.append((b"content-type", b"application/json"))
    if no_store:
        headers.append((b"cache-control", b"no-store"))
    headers.append((b"access-control-expose-headers", _EXPOSE))
    return headers


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _network(name: str) -> Network:
    try:
        return get_network(name)
    except ConfigurationError as exc:
        raise PricingError(str(exc)) from None


def _scheme_for(name: str, net: Network, pay_to: str | None) -> PaymentScheme:
    """The registered scheme ``name`` for ``net``, with ``pay_to`` checked as an address of its chain family."""
    scheme = find_scheme(name, net.namespace)
    if scheme is None:
        offered = sorted({s.scheme for s in schemes() if s.namespace == net.namespace})
        if (missing := missing_extra(net.namespace)) is not None:
            raise PricingError(f"{net.caip2} payments are not available here: {missing}")
        raise PricingError(
            f"no {name!r} scheme is registered for {net.namespace} networks like {net.caip2} "
            f"(registered: {', '.join(offered) or 'none'}; see x402_middleware.schemes.register_scheme)"
        )
    if pay_to is not None and not scheme.valid_address(pay_to):
        raise PricingError(f"pay_to {pay_to!r} is not {scheme.address_format} (needed on {net.caip2})")
    return scheme


def _schemes_of(pattern: str, cfg: RouteConfig) -> tuple[str, ...]:
    """A route's offered schemes, in order: one name or several (``("exact", "upto")``), no repeats."""
    names = (cfg.scheme,) if isinstance(cfg.scheme, str) else tuple(cfg.scheme)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ConfigurationError(
            f"route {pattern!r}: scheme must be a name such as 'exact' or distinct names such as ('exact', 'upto'), "
            f"got {cfg.scheme!r}"
        )
    if cfg.charge is not None and not callable(cfg.charge):
        raise ConfigurationError(
            f"route {pattern!r}: charge= is a function of the response (a Served) returning the actual charge of "
            f"an 'upto' payment, got {cfg.charge!r}"
        )
    return names


def _pay_to_table(value: PayTo | None, what: str) -> str | dict[str, str] | None:
    """A configured recipient checked: one address, or ``{namespace or CAIP-2 id: address}``."""
    if value is None or isinstance(value, str):
        return check_address(value, what) if value is not None else None
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(f"{what} must be an address or a non-empty mapping such as {{'solana': '<address>'}}")
    namespaces = {n.namespace for n in networks()}
    table: dict[str, str] = {}
    for key, address in value.items():
        net = find_network(key) if isinstance(key, str) else None
        if net is None and key not in namespaces:
            raise ConfigurationError(
                f"{what} key {key!r} is neither a network nor a chain family ({', '.join(sorted(namespaces))})"
            )
        table[net.caip2 if net is not None else key] = check_address(address, f"{what}[{key!r}]")
    return table


def _pay_to_of(table: str | dict[str, str] | None, net: Network) -> str | None:
    if table is None or isinstance(table, str):
        return table
    return table.get(net.caip2) or table.get(net.namespace)


def _route_pay_to(route: PaidRoute, net: Network) -> str:
    """The recipient a route has for ``net``'s chain family (its own network's first), for a policy's option."""
    for option_net, _, pay_to, _ in sorted(route.options, key=lambda o: o[0] != net):
        if pay_to and option_net.namespace == net.namespace:
            return pay_to
    return ""


def _replace(route: PaidRoute, **changes: Any) -> PaidRoute:
    from dataclasses import replace

    return replace(route, **changes)


__all__ = [
    "PAYMENT_IN_PROGRESS",
    "PAYMENT_REQUIRED_ERROR",
    "Gate",
    "InvalidPaymentError",
    "MalformedPaymentError",
    "RouteConfig",
    "logger",
]
