"""At-most-once bookkeeping for payments.

A payment is identified by a key its scheme gives (EVM ``exact``: chain id, token, payer, nonce). Its
:class:`PaymentRecord` moves through these states::

    (none) --reserve--> pending --settled--> settled               paid: never accepted again
                          |  |----refused--> burned(reason)         refused for good: never accepted again
                          |  '--unknown----> settling(tx hash)      outcome unknown: followed by the next request
                          '--app failed----> (none)                 the same signature may be sent again

* ``pending``: a request holds the payment (runs the app, settles it). A concurrent copy gets 402
  ``payment_in_progress``. Its ``detail`` is the transaction of an earlier settlement attempt, if any.
* ``settling``: a settlement was attempted but its outcome is not known (the receipt was slow, the
  facilitator's answer was lost). The next request with the same payment *claims* it back to ``pending``
  and settles it again, which a facilitator answers by following the transaction already sent (never a
  second charge: a signed payment can be used once). Nobody is told to pay again meanwhile.
* ``settled`` / ``burned``: final; kept until the authorization expires (after that the signature is
  worthless anyway).

The store is a :class:`typing.Protocol` with two atomic operations; :class:`InMemoryStore` serves one
process. Several replicas need a shared store: :class:`x402_middleware.stores.redis.RedisStore`.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple, Protocol

from cachetools import TLRUCache

PENDING = "pending"
SETTLING = "settling"
SETTLED = "settled"
BURNED = "burned"


class PaymentRecord(NamedTuple):
    """What a store remembers of one payment: a state and its detail (a transaction hash or a refusal reason)."""

    state: str
    detail: str = ""


CLAIMED = PaymentRecord(PENDING)


class PaymentStore(Protocol):
    """Where payments in flight, settled and refused payments are remembered.

    Both operations must be atomic (one Redis ``SET NX`` / a compare-and-set script, a database row lock).
    Example of a custom store::

        class MyStore:
            async def reserve(self, key: str, ttl: float) -> PaymentRecord | None: ...
            async def swap(self, key: str, expected: PaymentRecord, new: PaymentRecord | None,
                           ttl: float) -> bool: ...
    """

    async def reserve(self, key: str, ttl: float) -> PaymentRecord | None:
        """Claim ``key`` as ``pending`` for ``ttl`` seconds if it is unknown: ``None``; else its current record."""
        ...

    async def swap(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool:
        """Replace the record of ``key`` by ``new`` (``None`` forgets it) only if it is ``expected``; keep ``new``
        for ``ttl`` seconds. Returns whether it was replaced."""
        ...


class SyncPaymentStore(Protocol):
    """The blocking twin of :class:`PaymentStore`, for WSGI and sync Django (no event loop per request).

    :class:`InMemoryStore` is both. The ``_sync`` suffix lets one class serve both kinds of app::

        class MyStore:
            def reserve_sync(self, key: str, ttl: float) -> PaymentRecord | None: ...
            def swap_sync(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool: ...
    """

    def reserve_sync(self, key: str, ttl: float) -> PaymentRecord | None:
        """Claim ``key`` as ``pending`` for ``ttl`` seconds if it is unknown: ``None``; else its current record."""
        ...

    def swap_sync(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool:
        """Replace the record of ``key`` by ``new`` only if it is ``expected`` (see :meth:`PaymentStore.swap`)."""
        ...


class InMemoryStore:
    """A process-local :class:`PaymentStore` and :class:`SyncPaymentStore` (TTL cache, thread-safe).

    >>> store = InMemoryStore()
    >>> store.reserve_sync("k", 60) is None, store.reserve_sync("k", 60)
    (True, PaymentRecord(state='pending', detail=''))
    >>> store.swap_sync("k", CLAIMED, PaymentRecord(SETTLED, "0xabc"), 60), store.get("k")
    (True, PaymentRecord(state='settled', detail='0xabc'))
    """

    def __init__(self, maxsize: int = 1_000_000) -> None:
        self._cache: TLRUCache[str, tuple[PaymentRecord, float]] = TLRUCache(
            maxsize=maxsize, ttu=_expires_at, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def reserve_sync(self, key: str, ttl: float) -> PaymentRecord | None:
        with self._lock:
            current = self._cache.get(key)
            if current is not None:
                return current[0]
            self._cache[key] = (CLAIMED, time.monotonic() + ttl)
            return None

    def swap_sync(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool:
        with self._lock:
            current = self._cache.get(key)
            if current is None or current[0] != expected:
                return False
            if new is None:
                del self._cache[key]
            else:
                self._cache[key] = (new, time.monotonic() + max(ttl, 1.0))
            return True

    def get(self, key: str) -> PaymentRecord | None:
        """The current record of ``key`` (for tests and diagnostics)."""
        with self._lock:
            current = self._cache.get(key)
            return current[0] if current else None

    async def reserve(self, key: str, ttl: float) -> PaymentRecord | None:
        return self.reserve_sync(key, ttl)

    async def swap(self, key: str, expected: PaymentRecord, new: PaymentRecord | None, ttl: float) -> bool:
        return self.swap_sync(key, expected, new, ttl)


def _expires_at(_key: str, value: tuple[PaymentRecord, float], _now: float) -> float:
    return value[1]
