"""The settlement journal on PostgreSQL, shared by every replica (``pip install "x402_middleware[postgres]"``).

    journal = PostgresJournal("postgresql://x402@db.internal/payments")
    app = PaymentMiddleware(app, ..., store=RedisStore.from_url(...), journal=journal)

One table, ``x402_payments`` by default (``table=``; created when missing), one row per payment keyed by the scheme's payment id,
with the same states and rules as :class:`~x402_middleware.journal.SQLiteJournal`
(:func:`~x402_middleware.journal.action`). Each write is one transaction that locks the row
(``SELECT ... FOR UPDATE``), so replicas writing the same payment never interleave; a commit is durable as
PostgreSQL's ``synchronous_commit`` makes it (``on`` by default: flushed to the WAL on disk). A replica
that settled a payment and died before answering leaves a ``settled`` row that any other replica reads to
serve the retry.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from ..events import PaymentEvent
from ._entry import (
    COLUMNS,
    FAILED,
    INSERT,
    MARK_SERVED,
    SETTLED,
    UPDATE,
    JournalEntry,
    action,
    entry_from_row,
    recorded,
)

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError('PostgresJournal needs psycopg: pip install "x402_middleware[postgres]"') from exc

__all__ = ["PostgresJournal"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    scheme TEXT NOT NULL,
    network TEXT NOT NULL,
    asset TEXT NOT NULL,
    pay_to TEXT NOT NULL,
    payer TEXT NOT NULL,
    amount NUMERIC(78, 0) NOT NULL,
    nonce TEXT NOT NULL,
    valid_before BIGINT NOT NULL,
    tx TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    settled_at DOUBLE PRECISION,
    reconciled_at DOUBLE PRECISION,
    fingerprint TEXT NOT NULL DEFAULT '',
    served_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS {table}_state ON {table} (state);
"""
_UPDATE = (
    "UPDATE {table} SET state = %(state)s, tx = CASE WHEN %(tx)s <> '' THEN %(tx)s ELSE tx END,"
    " reason = %(reason)s, amount = COALESCE(%(amount)s, amount), updated_at = %(now)s,"
    " fingerprint = CASE WHEN %(fingerprint)s <> '' THEN %(fingerprint)s ELSE fingerprint END,"
    " settled_at = CASE WHEN %(state)s = 'settled' THEN %(now)s ELSE settled_at END,"
    " reconciled_at = CASE WHEN %(reconciled)s THEN %(now)s ELSE reconciled_at END WHERE key = %(key)s"
)


class PostgresJournal:
    """:class:`~x402_middleware.journal.Journal` on PostgreSQL: one connection per journal, used behind a lock
    (the middleware writes from worker threads). ``conninfo`` is a libpq URL or ``key=value`` string.

    Connecting is lazy, and a connection that broke is opened again on the next call."""

    def __init__(self, conninfo: str, *, table: str = "x402_payments", connect_timeout: float = 5.0) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"table must be a plain SQL identifier such as x402_payments, got {table!r}")
        self.conninfo, self.table = conninfo, table
        self._update = _UPDATE.replace("{table}", table)
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] | None = None
        with self._transaction() as db:
            db.execute(_SCHEMA.replace("{table}", table))

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = psycopg.connect(self.conninfo, connect_timeout=max(int(self._timeout), 1))
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            db = self._connection()
            with db.transaction():
                yield db

    def record(self, event: PaymentEvent) -> None:
        update = recorded(event)
        if update is None:
            return
        now = time.time()
        with self._transaction() as db:
            row = db.execute(f"SELECT state FROM {self.table} WHERE key = %s FOR UPDATE", (update.key,)).fetchone()
            todo = action(None if row is None else row[0], update)
            if todo == MARK_SERVED:
                db.execute(
                    f"UPDATE {self.table} SET served_at = %s, updated_at = %s WHERE key = %s", (now, now, update.key)
                )
            elif todo == INSERT:
                db.execute(
                    f"INSERT INTO {self.table} ({COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, NULL)"
                    " ON CONFLICT (key) DO NOTHING",
                    (
                        update.key,
                        update.state,
                        update.scheme,
                        update.network,
                        update.asset,
                        update.pay_to,
                        update.payer,
                        update.amount,
                        update.nonce,
                        update.valid_before,
                        update.transaction,
                        update.reason,
                        now,
                        now,
                        now if update.state == SETTLED else None,
                        update.fingerprint,
                    ),
                )
            elif todo == UPDATE:
                db.execute(
                    self._update,
                    {
                        "key": update.key,
                        "state": update.state,
                        "tx": update.transaction,
                        "reason": update.reason,
                        "amount": update.amount,
                        "fingerprint": update.fingerprint,
                        "now": now,
                        "reconciled": False,
                    },
                )

    def mark_reconciled(self, key: str, state: str, *, transaction: str = "", reason: str = "") -> None:
        if state not in (SETTLED, FAILED):
            raise ValueError(f"reconciliation settles a row as settled or failed, not {state!r}")
        with self._transaction() as db:
            row = db.execute(f"SELECT state FROM {self.table} WHERE key = %s FOR UPDATE", (key,)).fetchone()
            if row is None or row[0] == SETTLED:
                return
            db.execute(
                self._update,
                {
                    "key": key,
                    "state": state,
                    "tx": transaction,
                    "reason": reason,
                    "amount": None,
                    "fingerprint": "",
                    "now": time.time(),
                    "reconciled": True,
                },
            )

    def entries(self, *states: str) -> list[JournalEntry]:
        query = f"SELECT {COLUMNS} FROM {self.table}"
        params: tuple[Any, ...] = ()
        if states:
            query += " WHERE state = ANY(%s)"
            params = (list(states),)
        with self._transaction() as db:
            rows = db.execute(query + " ORDER BY created_at, key", params).fetchall()
        return [entry_from_row(row) for row in rows]

    def get(self, key: str) -> JournalEntry | None:
        with self._transaction() as db:
            row = db.execute(f"SELECT {COLUMNS} FROM {self.table} WHERE key = %s", (key,)).fetchone()
        return None if row is None else entry_from_row(row)

    def settled_totals(self) -> list[tuple[str, str, str, int, int]]:
        """``(day UTC, network, asset, count, sum of amounts)`` of settled rows, by day."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT to_char(to_timestamp(settled_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, network, asset,"
                f" count(*), sum(amount) FROM {self.table} WHERE state = 'settled'"
                " GROUP BY day, network, asset ORDER BY day, network, asset"
            ).fetchall()
        return [(day, network, asset, int(count), int(total)) for day, network, asset, count, total in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
