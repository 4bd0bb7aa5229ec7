"""Per-IP request limits for the free catalog and health endpoints (paid inference has no platform quota).

A sliding-window counter (the previous window's count weighted by how much of
it still overlaps, plus the current window's count): O(1) memory per client,
bounded by a ``cachetools.TTLCache``. Over the limit -> 429
``{"error": "Rate limit exceeded"}`` with ``X-RateLimit-Reset`` in unix milliseconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit: allowed or not, requests left, and when the window resets (unix ms)."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_ms),
        }


class SlidingWindow:
    """``limit`` requests per ``window`` seconds per key, approximately sliding (Cloudflare's counter)."""

    def __init__(
        self, limit: int, window: float, *, maxsize: int = 65_536, clock: Callable[[], float] = time.time
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("SlidingWindow needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        # key -> [window index, count in that window, count in the window before]
        self._counts: TTLCache[str, list[int]] = TTLCache(maxsize, ttl=2 * window, timer=clock)

    def hit(self, key: str) -> Decision:
        """Count one request for ``key`` unless it is over the limit."""
        now = self._clock()
        index = int(now // self.window)
        entry = self._counts.get(key)
        if entry is None or entry[0] < index - 1:
            entry = [index, 0, 0]
        elif entry[0] == index - 1:
            entry = [index, 0, entry[1]]
        overlap = 1 - (now - index * self.window) / self.window
        used = entry[2] * overlap + entry[1]
        reset_ms = math.ceil((index + 1) * self.window * 1000)
        if used + 1 > self.limit:
            self._counts[key] = entry
            return Decision(False, self.limit, 0, reset_ms)
        entry[1] += 1
        self._counts[key] = entry
        return Decision(True, self.limit, max(0, math.floor(self.limit - used - 1)), reset_ms)
