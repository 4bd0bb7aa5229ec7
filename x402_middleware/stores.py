"""At-most-once bookkeeping for payments.

A payment is identified by ``(chain id, token, payer, nonce)``. Before the app
runs, the middleware *reserves* it; a concurrent request with the same payment
then gets 402 ``payment_in_progress``. When settlement succeeds the record
becomes ``settled`` and lives until the authorization expires (after that the
signature is worthless anyway); when the request fails before settlement it is
*released*, so a client may resend the same signature.

The store is a :class:`typing.Protocol`; :class:`InMemoryStore` serves one
process. Several replicas need a shared store (Redis).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from cachetools import TLRUCache

PENDING = "pending"
SETTLED = "settled"


class PaymentStore(Protocol):
    """Where payments in flight and settled payments are remembered.

    Example of a custom store::

        class MyStore:
            async def reserve(self, key: str, ttl: float) -> str | None: ...
            async def release(self, key: str) -> None: ...
            async def mark_settled(self, key: str, ttl: float) -> None: ...
    """

    async def reserve(self, key: str, ttl: float) -> str | None:
        """Atomically claim ``key`` for ``ttl`` seconds. Returns ``None`` when claimed, else the current state."""
        ...

    async def release(self, key: str) -> None:
        """Forget a pending claim (the request failed before settlement)."""
        ...

    async def mark_settled(self, key: str, ttl: float) -> None:
        """Record that ``key`` was settled; keep it for ``ttl`` seconds."""
        ...


class SyncPaymentStore(Protocol):
    """The blocking twin of :class:`PaymentStore`, for WSGI and sync Django (no event loop per request).

    :class:`InMemoryStore` is both. The ``_sync`` suffix lets one class serve both
    kinds of app::

        class MyStore:
            def reserve_sync(self, key: str, ttl: float) -> str | None: ...
            def release_sync(self, key: str) -> None: ...
            def mark_settled_sync(self, key: str, ttl: float) -> None: ...
    """

    def reserve_sync(self, key: str, ttl: float) -> str | None:
        """Atomically claim ``key`` for ``ttl`` seconds. Returns ``None`` when claimed, else the current state."""
        ...

    def release_sync(self, key: str) -> None:
        """Forget a pending claim (the request failed before settlement)."""
        ...

    def mark_settled_sync(self, key: str, ttl: float) -> None:
        """Record that ``key`` was settled; keep it for ``ttl`` seconds."""
        ...


class InMemoryStore:
    """A process-local :class:`PaymentStore` and :class:`SyncPaymentStore` (TTL cache, thread-safe).

    >>> store = InMemoryStore()
    >>> store.reserve_sync("k", 60) is None, store.reserve_sync("k", 60)
    (True, 'pending')
    """

    def __init__(self, maxsize: int = 1_000_000) -> None:
        self._cache: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=maxsize, ttu=_expires_at, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def reserve_sync(self, key: str, ttl: float) -> str | None:
        with self._lock:
            current = self._cache.get(key)
            if current is not None:
                return current[0]
            self._cache[key] = (PENDING, time.monotonic() + ttl)
            return None

    def release_sync(self, key: str) -> None:
        with self._lock:
            current = self._cache.get(key)
            if current is not None and current[0] == PENDING:
                del self._cache[key]

    def mark_settled_sync(self, key: str, ttl: float) -> None:
        with self._lock:
            self._cache[key] = (SETTLED, time.monotonic() + max(ttl, 1.0))

    def state(self, key: str) -> str | None:
        with self._lock:
            current = self._cache.get(key)
            return current[0] if current else None

    async def reserve(self, key: str, ttl: float) -> str | None:
        return self.reserve_sync(key, ttl)

    async def release(self, key: str) -> None:
        self.release_sync(key)

    async def mark_settled(self, key: str, ttl: float) -> None:
        self.mark_settled_sync(key, ttl)


def _expires_at(_key: str, value: tuple[str, float], _now: float) -> float:
    return value[1]


def payment_key(chain_id: int, asset: str, payer: str, nonce: bytes) -> str:
    """The identity of an EIP-3009 payment: one on-chain nonce of one payer on one token."""
    return f"x402:{chain_id}:{asset.lower()}:{payer.lower()}:{nonce.hex()}"
