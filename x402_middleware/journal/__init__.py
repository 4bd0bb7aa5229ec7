"""Settlement journal: a durable record per payment, written from the lifecycle events, reconciled on chain.

    from x402_middleware.journal import Reconciler, SQLiteJournal

    journal = SQLiteJournal("x402-journal.db")
    app = PaymentMiddleware(app, ..., journal=journal)  # records every payment, serves lost responses again
    Reconciler(journal, rpc_url, interval=60).start()  # at start-up and periodically: rows a crash left behind

States: ``claimed`` (verified, the app runs) → ``settling`` (the settle call starts) → ``settled``
(transaction, amount) | ``failed`` (reason) | ``unknown`` (transaction when known) | ``not_settled``
(the app failed, the client left) | ``lost`` (an ``upto`` settlement refused after its content was served:
the operator's loss, ``amount`` the charge). A ``settled`` row is never downgraded. The operator view is
``python -m x402_middleware.journal --db PATH``.
"""

from __future__ import annotations

from ._entry import (
    CLAIMED,
    FAILED,
    LOST,
    NOT_SETTLED,
    PENDING,
    SERVED,
    SETTLED,
    SETTLING,
    STATES,
    UNKNOWN,
    Journal,
    JournalEntry,
    Recorded,
    async_journal_listener,
    journal_listener,
    recorded,
)
from .reconcile import EXPIRED_UNSETTLED, USED_ELSEWHERE, Reconciled, Reconciler, reconcile
from .sqlite import SQLiteJournal


def open_journal(target: str) -> Journal:
    """A :class:`SQLiteJournal` for a file path, a :class:`~x402_middleware.journal.postgres.PostgresJournal`
    for a ``postgresql://`` (or ``postgres://``) URL, shared by replicas::

        journal = open_journal(os.environ.get("X402_JOURNAL", "x402-journal.db"))
    """
    if target.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresJournal

        return PostgresJournal(target)
    return SQLiteJournal(target)


__all__ = [
    "CLAIMED",
    "EXPIRED_UNSETTLED",
    "FAILED",
    "LOST",
    "NOT_SETTLED",
    "PENDING",
    "SERVED",
    "SETTLED",
    "SETTLING",
    "STATES",
    "UNKNOWN",
    "USED_ELSEWHERE",
    "Journal",
    "JournalEntry",
    "Reconciled",
    "Reconciler",
    "Recorded",
    "SQLiteJournal",
    "async_journal_listener",
    "journal_listener",
    "open_journal",
    "reconcile",
    "recorded",
]
