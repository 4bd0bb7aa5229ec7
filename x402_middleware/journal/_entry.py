"""The journal's states, its rows, the :class:`Journal` protocol and the listener that feeds one from events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..events import LOST as LOST_EVENT
from ..events import (
    NOT_SETTLED,
    SERVED,
    SETTLE_FAILED,
    SETTLED,
    SETTLEMENT_UNKNOWN,
    SETTLING,
    VERIFIED,
    PaymentEvent,
)
from ..schemes import find_scheme
from ..schemes.evm.exact import ExactEvmPayload

__all__ = [
    "CLAIMED",
    "FAILED",
    "LOST",
    "NOT_SETTLED",
    "PENDING",
    "SERVED",
    "SETTLED",
    "SETTLING",
    "STATES",
    "UNKNOWN",
    "Journal",
    "JournalEntry",
    "Recorded",
    "async_journal_listener",
    "journal_listener",
    "recorded",
]

logger = logging.getLogger("x402_middleware.journal")

CLAIMED = "claimed"  # verified and reserved; the app runs
# SETTLING = "settling"  the settle call is about to be made (same string as the event kind)
# SETTLED = "settled"    on chain: transaction and amount are set (same string as the event kind)
FAILED = "failed"  # the facilitator refused (reason), or reconciliation found it expired unsettled
UNKNOWN = "unknown"  # sent but not confirmed, or the answer was lost (transaction when known)
# NOT_SETTLED = "not_settled"  the app failed, the client left, or nothing was attempted
#: an upto settlement refused after its content was served: the operator's loss (amount: the charge, reason)
LOST = "lost"
STATES = (CLAIMED, SETTLING, SETTLED, FAILED, UNKNOWN, NOT_SETTLED, LOST)
#: States a crash or a lost answer can leave behind: what reconciliation looks at.
PENDING = (CLAIMED, SETTLING, UNKNOWN)

_STATE_OF = {
    VERIFIED: CLAIMED,
    SETTLING: SETTLING,
    SETTLED: SETTLED,
    SETTLE_FAILED: FAILED,
    SETTLEMENT_UNKNOWN: UNKNOWN,
    NOT_SETTLED: NOT_SETTLED,
    LOST_EVENT: LOST,
    SERVED: SERVED,  # not a state: sets ``served_at`` of a settled row
}


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one event says about one payment: the columns a journal writes (see :func:`recorded`)."""

    key: str
    state: str
    scheme: str
    network: str
    asset: str
    pay_to: str
    payer: str
    amount: int
    nonce: str  # 0x-hex EIP-3009 nonce, "" for other schemes
    valid_before: int
    transaction: str = ""
    reason: str = ""
    fingerprint: str = ""  # the request the payment pays for (x402_middleware._fingerprint)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One payment's row."""

    key: str
    state: str
    scheme: str
    network: str
    asset: str
    pay_to: str
    payer: str
    amount: int
    nonce: str
    valid_before: int
    transaction: str
    reason: str
    created_at: float
    updated_at: float
    settled_at: float | None
    reconciled_at: float | None
    #: the request it paid for (``req:<sha256>`` or ``id:<payment-identifier>``), "" when not recorded
    fingerprint: str = ""
    #: when its response was handed to the server in full; ``None`` for a settled row: settled, not served
    served_at: float | None = None

    @property
    def unserved(self) -> bool:
        """Settled, but its response never reached the client (a crash, a dropped connection)."""
        return self.state == SETTLED and self.served_at is None


#: The columns of a journal row, in :class:`JournalEntry` order (every SQL backend selects these).
COLUMNS = (
    "key, state, scheme, network, asset, pay_to, payer, amount, nonce, valid_before, tx, reason, "
    "created_at, updated_at, settled_at, reconciled_at, fingerprint, served_at"
)


def entry_from_row(row: Any) -> JournalEntry:
    """A :class:`JournalEntry` from a row of :data:`COLUMNS` (the amount, stored as text or numeric, as int)."""
    values = list(row)
    values[7] = int(values[7])
    return JournalEntry(*values)


def recorded(event: PaymentEvent) -> Recorded | None:
    """The row update an event stands for, or ``None`` for an event kind the journal does not know."""
    state = _STATE_OF.get(event.kind)
    if state is None:
        return None
    payment = event.payment
    req = payment.requirements
    scheme = find_scheme(req.scheme, req.network.namespace)
    if scheme is None:  # the middleware only emits events for payments a registered scheme parsed
        return None
    pid = scheme.payment_id(payment.payload, req)
    data = payment.payload.data
    nonce = "0x" + data.authorization.nonce.hex() if isinstance(data, ExactEvmPayload) else ""
    # settled: what moved (upto: the actual charge); lost: the charge that was not paid; else the amount signed
    amount = event.amount if state in (SETTLED, LOST) and event.amount is not None else payment.amount
    reason = event.reason
    if state == NOT_SETTLED and not reason and event.status is not None:
        reason = f"the app answered {event.status}"
    return Recorded(
        key=pid.key,
        state=state,
        scheme=req.scheme,
        network=req.network.caip2,
        asset=req.asset.address,
        pay_to=req.pay_to,
        payer=payment.payer,
        amount=amount,
        nonce=nonce,
        valid_before=int(pid.expires_at),
        transaction=event.transaction,
        reason=reason,
        fingerprint=event.fingerprint,
    )


#: What a journal does with one :class:`Recorded` update, given the row's current state (see :func:`action`).
INSERT, UPDATE, MARK_SERVED, KEEP = "insert", "update", "served", "keep"


def action(current: str | None, update: Recorded) -> str:
    """The one rule every journal backend applies: a new row is inserted; ``served`` marks a settled row; a
    ``settled`` row is never downgraded; a retry's ``claimed`` keeps a row already in flight (its tx)."""
    if update.state == SERVED:
        return MARK_SERVED if current == SETTLED else KEEP
    if current is None:
        return INSERT
    if current == SETTLED:
        return KEEP
    if update.state == CLAIMED and current not in (NOT_SETTLED, CLAIMED):
        return KEEP
    return UPDATE


class Journal(Protocol):
    """A durable record per payment, written from the lifecycle events (``claimed`` → ``settling`` →
    ``settled`` | ``failed`` | ``unknown`` | ``not_settled``; ``served`` marks a settled row delivered). A
    ``settled`` row is never downgraded. Given as ``journal=`` to the middleware, it also lets a retry of a
    settled payment whose response was lost be served again (``get``)."""

    def record(self, event: PaymentEvent) -> None:
        """Write what ``event`` says about its payment (synchronously: it is on disk when this returns)."""
        ...

    def entries(self, *states: str) -> list[JournalEntry]:
        """The rows in any of ``states`` (all rows when none is given), oldest first."""
        ...

    def get(self, key: str) -> JournalEntry | None:
        """The row of one payment (its scheme payment id key)."""
        ...

    def settled_totals(self) -> list[tuple[str, str, str, int, int]]:
        """``(day UTC, network, asset, count, sum of amounts)`` of settled rows, by day."""
        ...

    def close(self) -> None:
        """Release the journal's connection."""
        ...

    def mark_reconciled(self, key: str, state: str, *, transaction: str = "", reason: str = "") -> None:
        """Record the outcome reconciliation found on chain (``settled`` or ``failed``)."""
        ...


def journal_listener(journal: Journal) -> Callable[[PaymentEvent], None]:
    """A plain (sync) listener for ``listeners=[...]`` that writes each event to ``journal``.

    The row is durable before the middleware takes its next step. For WSGI and sync Django; under ASGI use
    :func:`async_journal_listener`, which keeps the event loop free during the commit (with ``FULL`` sync an
    fsync; concurrent requests share one, see :class:`~x402_middleware.journal.SQLiteJournal`). A failed
    write is logged by the middleware and never changes the response.
    """

    def listen(event: PaymentEvent) -> None:
        journal.record(event)

    listen.__qualname__ = f"journal_listener({type(journal).__name__})"
    return listen


def async_journal_listener(journal: Journal) -> Callable[[PaymentEvent], Awaitable[None]]:
    """Like :func:`journal_listener` for ASGI: each write runs in a worker thread and is awaited, so the row is
    still durable before the next step while other requests keep being served::

        app = PaymentMiddleware(app, ..., listeners=[async_journal_listener(SQLiteJournal("x402-journal.db"))])
    """

    arecord = getattr(journal, "arecord", None)  # a journal's own awaitable write (SQLite's group commit)

    async def listen(event: PaymentEvent) -> None:
        if arecord is not None:
            await arecord(event)
        else:
            await asyncio.to_thread(journal.record, event)

    listen.__qualname__ = f"async_journal_listener({type(journal).__name__})"
    return listen
