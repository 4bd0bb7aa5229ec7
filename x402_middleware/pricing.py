"""Pricing policies: what a request costs.

A pricing policy is a plain callable, sync or async, that receives an immutable
:class:`PaymentRequest` and returns a price:

* ``None`` -- the request is free;
* a USD amount -- ``"$0.01"``, ``Decimal("0.01")`` -- paid in each accepted network's default USDC;
* :class:`TokenAmount` -- an exact amount of atomic units;
* a sequence of :class:`PaymentOption` -- several ways to pay, each with its own price, network, asset or payTo.

Policies must be deterministic for the same request: the client echoes the
quoted requirement back and the retry is priced again (x402 v2 §2.3)::

    def price(request: PaymentRequest) -> str | None:
        return None if request.path_params.get("id") == "free" else "$0.002"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeAlias

from .networks import Asset

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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
    """One accepted way to pay: a network, optionally a non-default asset, payTo and its own price."""

    network: str
    price: Price = None
    asset: Asset | None = None
    pay_to: str | None = None
    max_timeout_seconds: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


Price: TypeAlias = "str | Decimal | TokenAmount | Sequence[PaymentOption] | None"
PriceResult: TypeAlias = Price
PricingPolicy: TypeAlias = Callable[[PaymentRequest], "PriceResult | Awaitable[PriceResult]"]
