"""One validated configuration for every shell (ASGI, WSGI, Django sync and async), built at construction.

Each shell passes what it was given and whether it blocks (WSGI, sync Django) or awaits (ASGI, async
Django); :func:`build_config` checks everything the same way for all of them, so a wrong piece fails
when the app starts, not on its first paid request::

    config = build_config(routes={"GET /weather": "$0.001"}, facilitator=HTTPFacilitator(), pay_to="0x...",
                          blocking=False)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConfigurationError
from ._flow import FundsCheck, SettleWhen, settle_on_2xx
from ._gate import Gate
from .events import Listener, is_async_callable, listener_tuple
from .stores import InMemoryStore

#: Bodies larger than this are not read for pricing: a ``price_body`` route answers 413.
MAX_PRICING_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class PaymentConfig:
    """What one middleware instance uses: routes and prices (``gate``), facilitator, store and options."""

    gate: Gate
    facilitator: Any  # a Facilitator (awaiting shells) or a SyncFacilitator (blocking shells)
    store: Any  # a PaymentStore or a SyncPaymentStore, likewise
    settle_when: SettleWhen
    max_pricing_body: int
    funds: FundsCheck | None
    listeners: tuple[Listener, ...]
    journal: Any = None  # a Journal: written from the events (a listener) and read to recover lost responses


def build_config(
    *,
    routes: Mapping[str, Any],
    facilitator: Any,
    blocking: bool,
    pay_to: str | None = None,
    network: str | Sequence[str] = "eip155:8453",
    store: Any = None,
    max_timeout_seconds: int = 300,
    resource_url: str | None = None,
    settle_when: SettleWhen = settle_on_2xx,
    max_pricing_body: int = MAX_PRICING_BODY,
    check_funds: bool = False,
    listeners: Listener | Iterable[Listener] | None = None,
    journal: Any = None,
) -> PaymentConfig:
    """Validate and assemble a :class:`PaymentConfig`; raises :class:`ConfigurationError` saying what to fix."""
    gate = Gate(
        routes=routes,
        pay_to=pay_to,
        network=network,
        max_timeout_seconds=max_timeout_seconds,
        resource_url=resource_url,
        check_funds=check_funds,
        payment_identifier=journal is not None,
    )
    _check_facilitator(facilitator, blocking=blocking)
    store = InMemoryStore() if store is None else store
    _check_store(store, blocking=blocking)
    if blocking:
        for route in gate.routes:
            if route.policy is not None and is_async_callable(route.policy):
                raise ConfigurationError(
                    f"route {route.pattern.path!r}: an async price function cannot run under WSGI or sync Django; "
                    "make it a plain def"
                )
    if not callable(settle_when):
        raise ConfigurationError(f"settle_when must be a callable status -> bool, got {settle_when!r}")
    if type(max_pricing_body) is not int or max_pricing_body <= 0:
        raise ConfigurationError(f"max_pricing_body must be a positive number of bytes, got {max_pricing_body!r}")
    return PaymentConfig(
        gate=gate,
        facilitator=facilitator,
        store=store,
        settle_when=settle_when,
        max_pricing_body=max_pricing_body,
        funds=FundsCheck() if any(route.check_funds for route in gate.routes) else None,
        # The journal first: its row is on disk before any other listener runs (or crashes the process).
        listeners=_journal_listeners(journal, blocking=blocking) + listener_tuple(listeners, blocking=blocking),
        journal=journal,
    )


def _journal_listeners(journal: Any, *, blocking: bool) -> tuple[Listener, ...]:
    if journal is None:
        return ()
    missing = [name for name in ("record", "get", "entries") if not callable(getattr(journal, name, None))]
    if missing:
        raise ConfigurationError(
            f"journal must be a Journal such as SQLiteJournal(path); {type(journal).__name__} lacks {', '.join(missing)}"
        )
    from .journal import async_journal_listener, journal_listener

    return (journal_listener(journal) if blocking else async_journal_listener(journal),)


def _check_facilitator(facilitator: Any, *, blocking: bool) -> None:
    missing = [name for name in ("verify", "settle") if not callable(getattr(facilitator, name, None))]
    if missing:
        raise ConfigurationError(
            f"facilitator must have verify() and settle() (an HTTPFacilitator, OnChainFacilitator, ...); "
            f"{type(facilitator).__name__} lacks {', '.join(missing)}"
        )
    is_async = inspect.iscoroutinefunction(facilitator.settle)
    if blocking and is_async:
        raise ConfigurationError(
            f"a WSGI or sync Django app needs a blocking facilitator such as SyncHTTPFacilitator; "
            f"{type(facilitator).__name__}.settle is async"
        )
    if not blocking and not is_async:
        raise ConfigurationError(
            f"an ASGI app needs an async facilitator such as HTTPFacilitator or OnChainFacilitator; "
            f"{type(facilitator).__name__}.settle is a plain def (use it with PaymentWSGIMiddleware)"
        )


def _check_store(store: Any, *, blocking: bool) -> None:
    names = ("reserve_sync", "swap_sync") if blocking else ("reserve", "swap")
    if not all(callable(getattr(store, name, None)) for name in names):
        kind = "SyncPaymentStore" if blocking else "PaymentStore"
        raise ConfigurationError(f"store must be a {kind} ({', '.join(names)}); got {type(store).__name__}")
