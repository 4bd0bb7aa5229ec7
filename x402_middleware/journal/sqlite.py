"""The settlement journal in one local SQLite file (WAL mode, ``synchronous=FULL``, group commit).

    journal = SQLiteJournal("/var/lib/app/x402-journal.db")
    app = PaymentMiddleware(app, ..., journal=journal)

Durability: in WAL mode ``synchronous=NORMAL`` only syncs the log at checkpoints, so a power loss or an
OS crash may roll back the last committed transactions; those are exactly the ``settling`` and ``settled``
rows written just before the money moved or just after. ``FULL`` syncs the WAL at every commit, so a row is
on stable storage when :meth:`SQLiteJournal.record` (or :meth:`~SQLiteJournal.arecord`) returns.

One writer thread commits: every write waiting when a transaction starts goes into it (group commit), so
concurrent requests share one fsync instead of queueing for one each; each caller still returns only once
its own row is committed. Several processes may share the file (SQLite's own locking, ``busy_timeout``).
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from ..events import PaymentEvent
from ._entry import (
    COLUMNS,
    FAILED,
    INSERT,
    MARK_SERVED,
    SETTLED,
    UPDATE,
    JournalEntry,
    Recorded,
    action,
    entry_from_row,
    recorded,
)

__all__ = ["SQLiteJournal"]

_MAX_BATCH = 256  # writes per group commit


class _Write:
    """One row update waiting for its commit: a thread's event, or an event loop's future."""

    __slots__ = ("done", "error", "future", "loop", "update")

    def __init__(
        self,
        update: Recorded,
        done: threading.Event | None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.update, self.done, self.loop, self.future = update, done, loop, future
        self.error: Exception | None = None


def _finish(batch: list[_Write]) -> None:
    """Wake every caller of a committed batch: threads one by one, each event loop once for all its writes (one
    ``call_soon_threadsafe``, i.e. one wake-up of the loop, instead of one per write)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Write]] = {}
    for write in batch:
        if write.done is not None:
            write.done.set()
        elif write.loop is not None:
            by_loop.setdefault(write.loop, []).append(write)
    for loop, writes in by_loop.items():
        loop.call_soon_threadsafe(_resolve_all, writes)


def _resolve_all(writes: list[_Write]) -> None:
    for write in writes:
        if write.future is not None:
            _resolve(write.future, write.error)


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():  # the awaiting request was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    scheme TEXT NOT NULL,
    network TEXT NOT NULL,
    asset TEXT NOT NULL,
    pay_to TEXT NOT NULL,
    payer TEXT NOT NULL,
    amount TEXT NOT NULL,
    nonce TEXT NOT NULL,
    valid_before INTEGER NOT NULL,
    tx TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    settled_at REAL,
    reconciled_at REAL,
    fingerprint TEXT NOT NULL DEFAULT '',
    served_at REAL
);
CREATE INDEX IF NOT EXISTS payments_state ON payments (state);
"""
#: Columns added after the first release of the table: added to an older file when it is opened.
_ADDED = {"fingerprint": "TEXT NOT NULL DEFAULT ''", "served_at": "REAL"}


class SQLiteJournal:
    """One row per payment, keyed by the scheme's payment id; see :class:`x402_middleware.journal.Journal`.

    ``synchronous`` is ``"FULL"`` (default: a committed row survives a power loss) or ``"NORMAL"``.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL", timeout: float = 5.0) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"SQLite would not use WAL mode for {self.path} (got {mode!r})")
        self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(payments)")}
        for column, kind in _ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE payments ADD COLUMN {column} {kind}")
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # take the write lock first: read-then-write is atomic across processes
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record(self, event: PaymentEvent) -> None:
        update = recorded(event)
        if update is None:
            return
        write = _Write(update, threading.Event())
        self._submit(write)
        assert write.done is not None
        write.done.wait()
        if write.error is not None:
            raise write.error

    async def arecord(self, event: PaymentEvent) -> None:
        """:meth:`record` for an event loop: awaits the commit without holding a thread."""
        update = recorded(event)
        if update is None:
            return
        loop = asyncio.get_running_loop()
        write = _Write(update, None, loop, loop.create_future())
        self._submit(write)
        assert write.future is not None
        await write.future

    def _submit(self, write: _Write) -> None:
        with self._start_lock:
            if self._closed:
                raise RuntimeError(f"the journal {self.path} is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name=f"x402-journal-{self.path}", daemon=True)
                self._writer.start()
            self._queue.put(write)

    def _write_loop(self) -> None:
        # Group commit: every write waiting when a transaction starts goes into it, so concurrent requests
        # share one commit (one fsync with FULL) instead of queueing for one each.
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                with self._transaction() as db:
                    now = time.time()
                    for write in batch:
                        self._apply(db, write.update, now)
            except Exception:  # noqa: BLE001 - retried one by one below, each error to its own caller
                # One bad write must not fail the others: each gets its own transaction and its own answer.
                for write in batch:
                    try:
                        with self._transaction() as db:
                            self._apply(db, write.update, time.time())
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                        write.error = exc
            _finish(batch)

    def _apply(self, db: sqlite3.Connection, update: Recorded, now: float) -> None:
        row = db.execute("SELECT state FROM payments WHERE key = ?", (update.key,)).fetchone()
        todo = action(None if row is None else row[0], update)
        if todo == MARK_SERVED:
            db.execute("UPDATE payments SET served_at = ?, updated_at = ? WHERE key = ?", (now, now, update.key))
        elif todo == INSERT:
            db.execute(
                f"INSERT INTO payments ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
                (
                    update.key,
                    update.state,
                    update.scheme,
                    update.network,
                    update.asset,
                    update.pay_to,
                    update.payer,
                    str(update.amount),
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
            self._update(
                db,
                update.key,
                update.state,
                update.transaction,
                update.reason,
                now,
                update.amount,
                update.fingerprint,
            )

    @staticmethod
    def _update(
        db: sqlite3.Connection,
        key: str,
        state: str,
        transaction: str,
        reason: str,
        now: float,
        amount: int | None = None,
        fingerprint: str = "",
        reconciled: bool = False,
    ) -> None:
        db.execute(
            "UPDATE payments SET state = ?, tx = CASE WHEN ? != '' THEN ? ELSE tx END, reason = ?,"
            " amount = COALESCE(?, amount), updated_at = ?,"
            " fingerprint = CASE WHEN ? != '' THEN ? ELSE fingerprint END,"
            " settled_at = CASE WHEN ? = 'settled' THEN ? ELSE settled_at END,"
            " reconciled_at = CASE WHEN ? THEN ? ELSE reconciled_at END WHERE key = ?",
            (
                state,
                transaction,
                transaction,
                reason,
                None if amount is None else str(amount),
                now,
                fingerprint,
                fingerprint,
                state,
                now,
                reconciled,
                now,
                key,
            ),
        )

    def mark_reconciled(self, key: str, state: str, *, transaction: str = "", reason: str = "") -> None:
        if state not in (SETTLED, FAILED):
            raise ValueError(f"reconciliation settles a row as settled or failed, not {state!r}")
        with self._transaction() as db:
            row = db.execute("SELECT state FROM payments WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] == SETTLED:
                return
            self._update(db, key, state, transaction, reason, time.time(), reconciled=True)

    def entries(self, *states: str) -> list[JournalEntry]:
        query = f"SELECT {COLUMNS} FROM payments"
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at, key", states).fetchall()
        return [entry_from_row(row) for row in rows]

    def get(self, key: str) -> JournalEntry | None:
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} FROM payments WHERE key = ?", (key,)).fetchone()
        return None if row is None else entry_from_row(row)

    def settled_totals(self) -> list[tuple[str, str, str, int, int]]:
        """``(day UTC, network, asset, count, sum of amounts)`` of settled rows, by day."""
        with self._lock:
            rows = self._db.execute(
                "SELECT date(settled_at, 'unixepoch'), network, asset, amount FROM payments WHERE state = 'settled'"
            ).fetchall()
        totals: dict[tuple[str, str, str], list[int]] = {}
        for day, network, asset, amount in rows:  # amounts are uint256 text: summed in Python, not as SQLite int64
            slot = totals.setdefault((day, network, asset), [0, 0])
            slot[0] += 1
            slot[1] += int(amount)
        return [(*k, v[0], v[1]) for k, v in sorted(totals.items())]

    def close(self) -> None:
        with self._start_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
