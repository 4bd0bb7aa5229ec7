"""Settlement lifecycle events: what happened to each payment, for journals, metrics and logs.

The paid-request flow emits one :class:`PaymentEvent` at each step to the listeners given to the
middleware (``listeners=[...]``), in order, from the request that made the step::

    verified            the payment was matched, verified and reserved; the app runs next
    settling            the app answered a paid-for status: settlement starts
    settled             settled: ``transaction`` and ``amount`` are set (``upto``: the actual charge; 0 with
                        no transaction when the app charged nothing)
    settle_failed       the facilitator refused the settlement (``reason``); the payment is burned
    settlement_unknown  sent but not confirmed, or the facilitator's answer was lost (``reason``,
                        ``transaction`` when known); the next request with the payment follows it up
    not_settled         the app failed (``status``), the client left, or nothing was attempted
    lost                an ``upto`` settlement made after its content was served was refused (``reason``,
                        ``amount``: the charge): the operator served the request and is not paid for it
    recovered           a retry of a settled payment whose response was never delivered, with the same
                        request (``fingerprint``): served again without a second charge (``transaction``)
    served              the paid (or recovered) response was handed to the server in full

A listener is a plain callable taking the event; under ASGI it may be ``async``. A listener that raises is
logged and never changes the response::

    def record(event: PaymentEvent) -> None:
        if event.kind == SETTLED:
            ledger.add(event.payment.payer, event.amount, event.transaction)

    app = PaymentMiddleware(app, routes=..., facilitator=..., listeners=[record])
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from .models import Payment

__all__ = [
    "LOST",
    "NOT_SETTLED",
    "RECOVERED",
    "SERVED",
    "SETTLED",
    "SETTLEMENT_UNKNOWN",
    "SETTLE_FAILED",
    "SETTLING",
    "VERIFIED",
    "Listener",
    "PaymentEvent",
]

VERIFIED = "verified"
SETTLING = "settling"
SETTLED = "settled"
SETTLE_FAILED = "settle_failed"
SETTLEMENT_UNKNOWN = "settlement_unknown"
NOT_SETTLED = "not_settled"
LOST = "lost"
RECOVERED = "recovered"
SERVED = "served"

logger = logging.getLogger("x402_middleware")


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One step of one payment (see the module docstring for the kinds)."""

    kind: str
    payment: Payment
    transaction: str = ""
    amount: int | None = None
    reason: str = ""
    status: int | None = None  # the app's status, for ``not_settled`` because of it
    request: Any = None  # the request it belongs to: the ASGI scope, the WSGI environ or the Django request
    #: the request this payment pays for (see :func:`x402_middleware._fingerprint.request_fingerprint`); set
    #: from ``settling`` on, once the app has read its body
    fingerprint: str = ""


Listener = Callable[[PaymentEvent], "None | Awaitable[None]"]


def listener_tuple(listeners: Listener | Iterable[Listener] | None, *, blocking: bool) -> tuple[Listener, ...]:
    """Validate listeners at construction: callables, and no ``async`` one where nothing awaits (WSGI)."""
    if listeners is None:
        return ()
    found = (listeners,) if callable(listeners) else tuple(listeners)
    for listener in found:
        if not callable(listener):
            raise ConfigurationError(f"a listener must be a callable taking a PaymentEvent, got {listener!r}")
        if blocking and is_async_callable(listener):
            raise ConfigurationError(
                f"listener {listener!r} is async, but a WSGI or sync Django app cannot await it; make it a plain def"
            )
    return found


def notify(listeners: Sequence[Listener], event: PaymentEvent) -> None:
    """Call blocking listeners; an exception is logged, never raised."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logger.exception("x402: listener %r failed on a %s event", listener, event.kind)


async def anotify(listeners: Sequence[Listener], event: PaymentEvent) -> None:
    """Call listeners, awaiting async ones; an exception is logged, never raised."""
    for listener in listeners:
        try:
            result = listener(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("x402: listener %r failed on a %s event", listener, event.kind)


def is_async_callable(obj: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one (a listener, a price function)."""
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - an async __call__ on a class instance
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)
