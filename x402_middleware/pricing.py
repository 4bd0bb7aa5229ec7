"""Pricing policies: what a request costs.

A pricing policy is a plain callable, sync or async, that receives an immutable
:class:`PaymentRequest` and returns a price:

* ``None`` -- the request is free;
* a USD amount -- ``"$0.01"``, ``Decimal("0.01")`` -- paid in each accepted network's default USDC;
* :class:`TokenAmount` -- an exact amount of atomic units;
* a sequence of :class:`PaymentOption` -- several ways to pay, each with its own price, network, asset or payTo;
* :class:`Priced` -- any of these with a description of what this request buys (the 402's ``resource.description``).

Policies must be deterministic for the same request: the client echoes the
quoted requirement back and the retry is priced again (x402 v2 §2.3)::

    def price(request: PaymentRequest) -> str | None:
        return None if request.path_params.get("id") == "free" else "$0.002"

Built-in policies are frozen dataclasses with ``__call__``, so they and plain
functions are interchangeable: :class:`FixedPrice`, :class:`RouteTable`,
:class:`PaymentOptions` (one price, several networks/assets) and the per-token
quotes :class:`TokenQuote` / :class:`LLMQuote` (the BlockRun formula). A policy
rejects input the client must fix with :class:`~x402_middleware.UnpriceableRequestError`
(HTTP 400); any other exception is a bug in the policy (HTTP 500, logged, never served).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Context, Decimal
from types import MappingProxyType
from typing import Any, TypeAlias

from ._exceptions import ConfigurationError, UnpriceableRequestError
from .money import parse_usd, to_atomic_ceil
from .networks import Asset
from .routes import RoutePattern

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_UNKNOWN: Any = object()  # LLMQuote: refuse models that are not listed


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What a pricing policy may look at. Header names are lower-case.

    ``body`` is the parsed JSON body when the route asked for it (``price_body=True``)
    and the body was JSON within the size cap; otherwise ``None``.
    """

    method: str
    path: str
    path_params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True, slots=True)
class TokenAmount:
    """An exact price in the token's atomic units (``TokenAmount(1000)`` is 0.001 USDC)."""

    amount: int
    asset: Asset | None = None

    def __post_init__(self) -> None:
        if type(self.amount) is not int or self.amount < 0:
            raise ValueError(f"TokenAmount needs a non-negative int of atomic units, got {self.amount!r}")


@dataclass(frozen=True, slots=True)
class PaymentOption:
    """One accepted way to pay: a network, optionally a non-default asset, payTo, its own price and scheme."""

    network: str
    price: Price = None
    asset: Asset | None = None
    pay_to: str | None = None
    max_timeout_seconds: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    scheme: str = "exact"


Price: TypeAlias = "str | Decimal | TokenAmount | Sequence[PaymentOption] | None"
#: A rate or amount in USD given at configuration time: ``"2.50"``, ``Decimal("2.50")`` or an int.
Rate: TypeAlias = "str | Decimal | int"

#: Longest :attr:`Priced.description` (it travels in the 402's header and in the signed payload).
MAX_DESCRIPTION = 300


@dataclass(frozen=True, slots=True)
class Priced:
    """A policy's price with what this one request buys, for the 402's ``resource.description``.

    Return it from a policy instead of a bare price when the description depends on the request
    (the route's ``RouteConfig(description=...)`` is used otherwise). ASCII only: the TypeScript
    x402 clients sign the payload with ``btoa``, which throws above U+00FF (blockrun-clients.md §2.3)::

        def price(request: PaymentRequest) -> Priced:
            n = int(request.query.get("n", "1"))
            return Priced(TokenAmount(1000 * n), f"{n} weather forecast(s)")
    """

    price: Price
    description: str

    def __post_init__(self) -> None:
        text = self.description
        if not isinstance(text, str) or not text.isascii() or not text.isprintable() or len(text) > MAX_DESCRIPTION:
            raise ValueError(
                f"Priced.description must be printable ASCII of at most {MAX_DESCRIPTION} characters "
                f"(x402 clients sign it with btoa), got {text!r:.80}"
            )


PriceResult: TypeAlias = "Price | Priced"
PricingPolicy: TypeAlias = Callable[[PaymentRequest], "PriceResult | Awaitable[PriceResult]"]


def _price(value: Any, what: str) -> Any:
    """Validate a static price once, at configuration time (R11: strings are parsed here, never per request)."""
    if value is None or isinstance(value, TokenAmount):
        return value
    if isinstance(value, (str, Decimal)):
        return parse_usd(value)
    if isinstance(value, Sequence) and value and all(isinstance(o, PaymentOption) for o in value):
        return tuple(value)
    raise ConfigurationError(
        f"{what}: {value!r} is not a price; use None (free), '$0.01', Decimal('0.01'), TokenAmount(10_000) "
        "or a list of PaymentOption"
    )


def _rate(value: Any, what: str) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, (str, Decimal)):
        raise ConfigurationError(f"{what} must be a Decimal or a string such as '2.50', got {value!r}")
    return parse_usd(value)


@dataclass(frozen=True, slots=True)
class FixedPrice:
    """The same price for every request.

    >>> FixedPrice("$0.001")(PaymentRequest("GET", "/weather"))
    Decimal('0.001')
    """

    price: Price

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", _price(self.price, "FixedPrice"))

    def __call__(self, request: PaymentRequest) -> Price:
        return self.price


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Prices by path pattern; the first matching pattern wins, else ``default`` (free unless set).

    Patterns are those of the middleware's ``routes`` (``/items/{id}``, ``/files/*``,
    ``"POST /v1/chat"``). A value is a price or another policy, which then sees the
    pattern's path parameters::

        RouteTable({"GET /items/{id}": "$0.01", "/files/*": "$0.10", "POST /v1/chat": LLMQuote(...)})
    """

    routes: Mapping[str, Any]
    default: Any = None
    _table: tuple[tuple[RoutePattern, Any], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not isinstance(self.routes, Mapping) or not self.routes:
            raise ConfigurationError("RouteTable needs a non-empty mapping such as {'GET /items/{id}': '$0.01'}")
        table = tuple(
            (RoutePattern.parse(k), v if callable(v) else _price(v, f"RouteTable[{k!r}]"))
            for k, v in self.routes.items()
        )
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))
        if not callable(self.default):
            object.__setattr__(self, "default", _price(self.default, "RouteTable default"))

    def __call__(self, request: PaymentRequest) -> PriceResult | Awaitable[PriceResult]:
        value: Any = self.default
        for pattern, candidate in self._table:
            params = pattern.match(request.method, request.path)
            if params is not None:
                value = candidate
                if params and callable(value):
                    request = replace(request, path_params={**request.path_params, **params})
                break
        result: PriceResult | Awaitable[PriceResult] = value(request) if callable(value) else value
        return result


@dataclass(frozen=True, slots=True)
class PaymentOptions:
    """Accept one price on several networks or assets at once (a list of :class:`PaymentOption`).

    ``price`` is a static price or a policy; every option without its own price
    gets it. The payer picks one option; the order is the order of preference::

        PaymentOptions("$0.01", [PaymentOption("eip155:8453"), PaymentOption("eip155:84532")])
    """

    price: Any
    options: Sequence[PaymentOption]

    def __post_init__(self) -> None:
        if not self.options or not all(isinstance(o, PaymentOption) for o in self.options):
            raise ConfigurationError("PaymentOptions needs a non-empty list of PaymentOption")
        object.__setattr__(self, "options", tuple(self.options))
        if not callable(self.price):
            object.__setattr__(self, "price", _price(self.price, "PaymentOptions"))

    def __call__(self, request: PaymentRequest) -> PriceResult | Awaitable[PriceResult]:
        price = self.price(request) if callable(self.price) else self.price
        if inspect.isawaitable(price):
            return _Then(price, self._expand)
        return self._expand(price)

    def _expand(self, price: PriceResult) -> PriceResult:
        if isinstance(price, Priced):
            return Priced(self._expand(price.price), price.description)  # type: ignore[arg-type]
        if price is None or (isinstance(price, Sequence) and not isinstance(price, str)):
            return price  # free, or the inner policy chose its own options
        return [o if o.price is not None else replace(o, price=price) for o in self.options]


class _Then:
    """``await`` an inner policy's result, then map it; ``close()`` reaches the inner coroutine.

    (An ``async def`` wrapper would hide the inner coroutine from a WSGI shell
    that refuses async policies and closes what it got.)
    """

    __slots__ = ("_fn", "_inner")

    def __init__(self, inner: Awaitable[Any], fn: Callable[[Any], Any]) -> None:
        self._inner = inner
        self._fn = fn

    def __await__(self) -> Generator[Any, None, Any]:
        return self._fn((yield from self._inner.__await__()))

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """A deterministic input-token estimate for a chat request: 1 token per 4 characters of the prompt.

    Counts ``system``, ``messages``, ``tools``, ``prompt`` and ``input`` as compact
    JSON with sorted keys, so the same request always gets the same estimate
    (the paid retry must be quoted exactly like the challenge).

    >>> estimate_input_tokens({"messages": [{"role": "user", "content": "hello"}]})
    12
    """
    parts = {k: body[k] for k in ("system", "messages", "tools", "prompt", "input") if k in body}
    if not parts:
        return 0
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return math.ceil(len(text) / 4)


# Enough digits that rates x 1M tokens never round before the final ceiling.
_EXACT = Context(prec=60)


@dataclass(frozen=True, slots=True, init=False)
class TokenQuote:
    """Price an LLM request from its JSON body: the BlockRun quote formula.

    ``usd = max((input_tokens x input_rate + ceil(output_share x max_tokens) x output_rate) / 1M
    x (1 + markup_percent / 100), floor) + flat_fee``, rounded **up** to the token's
    atomic unit. Rates are USD per 1M tokens. The output share is rounded up to whole
    tokens, which reproduces BlockRun's published quote (GPT-5.5 at $5/$30, 17 input
    tokens, ``max_tokens`` 8192: 85 + 820 x 30 = 24685, + $0.001 = ``"25685"``). ``input_tokens`` comes from
    ``estimate_tokens(body)``; ``max_tokens`` (or ``max_completion_tokens``) from the
    body, ``default_max_tokens`` when absent. Needs ``RouteConfig(price_body=True)``.

    >>> TokenQuote("3.00", "15.00").atomic(input_tokens=1000, max_tokens=1000)   # $0.0045 + $0.001 fee
    5500
    """

    input_per_million: Decimal
    output_per_million: Decimal
    output_share: Decimal
    markup_percent: Decimal
    floor: Decimal
    flat_fee: Decimal
    default_max_tokens: int
    max_tokens_limit: int
    decimals: int
    estimate_tokens: Callable[[Mapping[str, Any]], int] = field(compare=False)

    # A hand-written __init__ so rates may be given as strings ("2.50") while the fields stay Decimal.
    def __init__(
        self,
        input_per_million: Rate,
        output_per_million: Rate,
        *,
        output_share: Rate = "0.1",
        markup_percent: Rate = 0,
        floor: Rate = "0.001",
        flat_fee: Rate = "0.001",
        default_max_tokens: int = 1024,
        max_tokens_limit: int = 1_000_000,
        decimals: int = 6,
        estimate_tokens: Callable[[Mapping[str, Any]], int] = estimate_input_tokens,
    ) -> None:
        rates = {
            "input_per_million": input_per_million,
            "output_per_million": output_per_million,
            "output_share": output_share,
            "markup_percent": markup_percent,
            "floor": floor,
            "flat_fee": flat_fee,
        }
        for name, value in rates.items():
            object.__setattr__(self, name, _rate(value, f"TokenQuote.{name}"))
        for name, number in (
            ("default_max_tokens", default_max_tokens),
            ("max_tokens_limit", max_tokens_limit),
            ("decimals", decimals),
        ):
            if type(number) is not int:
                raise ConfigurationError(f"TokenQuote.{name} must be an int, got {number!r}")
            object.__setattr__(self, name, number)
        object.__setattr__(self, "estimate_tokens", estimate_tokens)
        if self.output_share > 1:
            raise ConfigurationError("TokenQuote.output_share is a fraction of max_tokens between 0 and 1, e.g. '0.1'")
        if not 1 <= default_max_tokens <= max_tokens_limit:
            raise ConfigurationError("TokenQuote.default_max_tokens must be between 1 and max_tokens_limit")
        if not 0 <= decimals <= 36:
            raise ConfigurationError("TokenQuote.decimals must be between 0 and 36 (USDC has 6)")

    def usd(self, input_tokens: int, max_tokens: int) -> Decimal:
        """The exact quote in USD, before rounding to atomic units."""
        output_tokens = _EXACT.multiply(self.output_share, Decimal(max_tokens)).to_integral_value(ROUND_CEILING)
        return self.usage_usd(input_tokens, output_tokens)

    def atomic(self, input_tokens: int, max_tokens: int) -> int:
        """The quote in atomic units, rounded up (a partial unit is charged as a whole one)."""
        return to_atomic_ceil(self.usd(input_tokens, max_tokens), self.decimals)

    def usage_usd(self, input_tokens: int, output_tokens: int | Decimal) -> Decimal:
        """What a call that *used* these tokens costs, in USD: the same formula with the actual output tokens
        instead of a share of ``max_tokens`` (for ``upto``: :func:`x402_middleware.charge` it)."""
        c = _EXACT
        tokens = c.add(
            c.multiply(Decimal(input_tokens), self.input_per_million),
            c.multiply(Decimal(output_tokens), self.output_per_million),
        )
        cost = c.multiply(c.divide(tokens, Decimal(1_000_000)), c.add(1, c.divide(self.markup_percent, Decimal(100))))
        return c.add(max(cost, self.floor), self.flat_fee)

    def usage_atomic(self, input_tokens: int, output_tokens: int) -> int:
        """:meth:`usage_usd` in atomic units, rounded up.

        >>> TokenQuote("3.00", "15.00").usage_atomic(input_tokens=1000, output_tokens=10)   # $0.00315 + $0.001 fee
        4150
        """
        return to_atomic_ceil(self.usage_usd(input_tokens, output_tokens), self.decimals)

    def __call__(self, request: PaymentRequest) -> TokenAmount:
        body = _json_object(request)
        return TokenAmount(self.atomic(self.estimate_tokens(body), self._max_tokens(body)))

    def _max_tokens(self, body: Mapping[str, Any]) -> int:
        value = body.get("max_tokens", body.get("max_completion_tokens"))
        if value is None:
            return self.default_max_tokens
        if type(value) is not int or not 1 <= value <= self.max_tokens_limit:
            raise UnpriceableRequestError(
                "invalid_max_tokens",
                f"max_tokens must be an integer between 1 and {self.max_tokens_limit}, got {value!r}",
            )
        return value


@dataclass(frozen=True, slots=True)
class LLMQuote:
    """Per-model prices for an LLM gateway: each model id maps to a :class:`TokenQuote`, a flat price or ``None`` (free).

    The model is read from the JSON body (``model_field``); an unknown model is
    refused with 400 ``unknown_model`` unless ``default`` is given::

        quote = LLMQuote.from_rates({"openai/gpt-4o": ("2.50", "10.00"), "openai/gpt-oss-20b": "$0.001",
                                     "nvidia/nemotron-3.5-lightning": None})
        routes = {"POST /v1/chat/completions": RouteConfig(price=quote, price_body=True)}
    """

    models: Mapping[str, Any]
    default: Any = _UNKNOWN
    model_field: str = "model"

    def __post_init__(self) -> None:
        if not isinstance(self.models, Mapping) or not self.models:
            raise ConfigurationError("LLMQuote needs a non-empty mapping of model id -> TokenQuote or price")
        checked = {k: v if isinstance(v, TokenQuote) else _price(v, f"LLMQuote[{k!r}]") for k, v in self.models.items()}
        object.__setattr__(self, "models", MappingProxyType(checked))
        if self.default is not _UNKNOWN and not isinstance(self.default, TokenQuote):
            object.__setattr__(self, "default", _price(self.default, "LLMQuote default"))

    @classmethod
    def from_rates(cls, rates: Mapping[str, Any], *, default: Any = _UNKNOWN, **quote_options: Any) -> LLMQuote:
        """Build from ``{model: (input_per_million, output_per_million) | flat price | None}``.

        ``quote_options`` (``markup_percent``, ``floor``, ``flat_fee``, ...) apply to every per-token model.
        """
        models = {m: TokenQuote(*r, **quote_options) if isinstance(r, tuple) else r for m, r in rates.items()}
        return cls(models, default)

    def __call__(self, request: PaymentRequest) -> Price:
        body = _json_object(request)
        model = body.get(self.model_field)
        if not isinstance(model, str) or not model:
            raise UnpriceableRequestError("missing_model", f"the JSON body must name a {self.model_field!r}")
        entry = self.models.get(model, self.default)
        if entry is _UNKNOWN:
            raise UnpriceableRequestError("unknown_model", f"model {model[:100]!r} is not offered here")
        return entry(request) if isinstance(entry, TokenQuote) else entry


def _json_object(request: PaymentRequest) -> Mapping[str, Any]:
    if not isinstance(request.body, Mapping):
        raise UnpriceableRequestError(
            "invalid_request_body",
            "this route is priced from its JSON body: send a JSON object (Content-Length within the pricing size cap)",
        )
    return request.body
