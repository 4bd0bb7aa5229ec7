"""Pay for what you use: the app reports the actual charge of an ``upto`` payment.

A route opts in with its **maximum** price and the ``upto`` scheme (``../shared/docs/x402-protocol.md`` §3.4):
the client signs that maximum, the app runs and says what the request really cost, and the middleware settles
that amount, never more than the maximum, once the response is complete::

    routes = {"POST /v1/render": RouteConfig(price="$0.10", scheme="upto")}

    async def render(request):             # Starlette; a Flask or Django view, a raw scope or environ alike
        frames = do_the_work()
        charge(request, f"${frames * Decimal('0.001')}")
        return JSONResponse({"frames": frames})

Or compute the charge from the response, with no code in the handler: ``RouteConfig(..., charge=fn)`` where
``fn(served)`` gets a :class:`Served` (request, status, headers, payment) and returns a price.

Rules, the same in every shell (ASGI, WSGI, Django):

* the last ``charge()`` counts; an ``int`` is atomic units of the payment's asset, ``"$0.0042"`` or a
  ``Decimal`` is USD (a partial atomic unit is charged as a whole one), :class:`~x402_middleware.TokenAmount`
  is atomic units;
* no charge reported (and no ``charge=`` function, or it returned ``None``): the **maximum** is settled and a
  warning logged;
* a charge above the maximum is a bug in the app: logged at ``ERROR`` and clamped to the maximum;
* a charge of 0 settles nothing (no transaction);
* a failed response (any status the middleware does not settle, by default >= 300) is never settled;
* a response known whole when it starts (one body message, or a ``Content-Length`` body in one chunk,
  a non-streaming Django response) is settled before it is sent, exactly like ``exact``: a refused
  settlement still answers 402. A streamed response is settled when its last byte was handed to the server:
  a settlement that fails then is a **loss for the operator** (the content was served): it is logged at
  ``ERROR``, emitted as a :data:`~x402_middleware.events.LOST` event, recorded by the journal as ``lost`` and
  counted in metrics, and never retried. A stream the app abandons midway settles the charge reported so far,
  and nothing when none was.

``facilitator.verify`` runs before the app for every ``upto`` payment (balance, Permit2 allowance and a
simulation of the transfer of the maximum), even where ``exact`` is verified locally: the content goes out
before the money moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigurationError
from .money import parse_usd, to_atomic_ceil

if TYPE_CHECKING:
    from .models import Payment

__all__ = ["UPTO", "USAGE_KEY", "ChargeFunction", "Served", "Usage", "charge", "usage_of"]

logger = logging.getLogger("x402_middleware")

#: The wire name of the scheme that settles the actual amount, at most the signed maximum.
UPTO = "upto"
#: Where the middleware puts a request's :class:`Usage`: a key of the ASGI scope, the WSGI environ and
#: Django's ``request.META``.
USAGE_KEY = "x402.usage"


@dataclass(frozen=True, slots=True)
class Served:
    """What a ``charge=`` function sees when the response is complete.

    ``headers`` are the response's, names lower-case. ``request`` is the ASGI scope, the WSGI environ or the
    Django request::

        def by_header(served: Served) -> int:
            return int(served.headers.get("x-units", "0")) * 1000   # atomic units

        RouteConfig(price="$0.05", scheme="upto", charge=by_header)
    """

    request: Any
    status: int
    headers: Mapping[str, str]
    payment: Payment


#: A route's charge computed from its response: a price (``int`` atomic units, ``"$0.01"``, ``Decimal`` USD,
#: ``TokenAmount``) or ``None`` for the maximum.
ChargeFunction = Callable[[Served], Any]


class Usage:
    """The actual charge of one ``upto`` payment, as the app reports it (one per request, never shared)."""

    __slots__ = ("_amount", "decimals", "maximum", "payment")

    def __init__(self, payment: Payment) -> None:
        self.payment = payment
        self.maximum = payment.amount
        self.decimals = payment.requirements.asset.decimals
        self._amount: int | None = None

    @property
    def charged(self) -> int | None:
        """The charge reported so far (atomic units, clamped), ``None`` when the app reported none."""
        return self._amount

    def charge(self, amount: Any) -> int:
        """Report the actual charge; returns it in atomic units, clamped to the maximum. The last call counts."""
        atomic = atomic_charge(amount, self.decimals)
        if atomic > self.maximum:
            logger.error(
                "x402: the app charged %s, above the signed maximum %s of %s's upto payment: settling the maximum",
                atomic,
                self.maximum,
                self.payment.payer,
            )
            atomic = self.maximum
        self._amount = atomic
        return atomic

    def final(self, served: Callable[[], Served], function: ChargeFunction | None) -> int:
        """The amount to settle once the response is complete: the reported charge, else the route's ``charge=``
        function, else the maximum (logged)."""
        if self._amount is None and function is not None:
            try:
                value = function(served())
                if value is not None:
                    self.charge(value)
            except Exception:  # a bug in the route's charge function: logged, and the maximum is what was agreed
                logger.exception("x402: the charge function of %s's upto payment failed", self.payment.payer)
        if self._amount is None:
            logger.warning(
                "x402: no charge was reported for %s's upto payment (call x402_middleware.charge(request, amount)): "
                "settling the maximum %s",
                self.payment.payer,
                self.maximum,
            )
            return self.maximum
        return self._amount


def atomic_charge(amount: Any, decimals: int) -> int:
    """A reported charge in atomic units: ``int`` as is, USD (``"$0.0042"``, ``Decimal``) rounded **up**."""
    from .pricing import TokenAmount

    if isinstance(amount, TokenAmount):
        return amount.amount
    if isinstance(amount, (bool, float)):
        raise ConfigurationError(
            f"charge {amount!r}: give an int of atomic units, '$0.0042' or a Decimal of USD, never a float"
        )
    if isinstance(amount, int):
        if amount < 0:
            raise ConfigurationError(f"charge {amount!r} is negative; give 0 or more atomic units")
        return amount
    if isinstance(amount, (str, Decimal)):
        return to_atomic_ceil(parse_usd(amount), decimals)
    raise ConfigurationError(
        f"charge {amount!r}: give an int of atomic units, '$0.0042', a Decimal of USD or a TokenAmount"
    )


def usage_of(request: Any) -> Usage | None:
    """The :class:`Usage` of a request paid with ``upto``, or ``None`` (not paid, or paid with ``exact``).

    ``request`` is an ASGI scope, a WSGI environ, a Starlette/Flask/Werkzeug request (``.scope``/``.environ``)
    or a Django request (``.META``).
    """
    for holder in (request, getattr(request, "scope", None), getattr(request, "environ", None)):
        if isinstance(holder, Mapping):
            found = holder.get(USAGE_KEY)
            if isinstance(found, Usage):
                return found
    meta = getattr(request, "META", None)
    if isinstance(meta, Mapping):
        found = meta.get(USAGE_KEY)
        if isinstance(found, Usage):
            return found
    return None


def charge(request: Any, amount: Any) -> bool:
    """Report what this request really cost: settled, at most the signed maximum, when the response is complete.

    ``request``: the ASGI scope, the WSGI environ, a Starlette, Flask or Django request. ``amount``: an ``int`` of
    the asset's atomic units, ``"$0.0042"`` or a ``Decimal`` of USD, or a ``TokenAmount``. Returns ``False``
    (and does nothing) when the request has no ``upto`` payment: a free call, or a client that chose ``exact``
    on a route that offers both, which pays the maximum it signed::

        charge(request, 4200)        # 0.0042 USDC
        charge(request, "$0.0042")   # the same
    """
    usage = usage_of(request)
    if usage is None:
        atomic_charge(amount, 6)  # a wrong amount is a bug even where it is not used
        return False
    usage.charge(amount)
    return True


def header_map(headers: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """Response headers as ``{lower-case name: value}`` from ASGI (bytes) or WSGI/Django (str) pairs."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        out[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return out
