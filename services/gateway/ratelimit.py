"""Per-key sliding-window rate limits, held in this gateway process.

Each gateway replica counts on its own: with N replicas behind a balancer a client may
get up to N times the limit. That is the price of needing no shared store for it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from kazru import errors

# Above this many tracked keys, the ones with nothing inside the window are dropped.
PRUNE_ABOVE_KEYS = 10_000


class SlidingWindowLimiter:
    """At most `limit` events per `window_seconds` for every key; `limit` 0 turns it off."""

    def __init__(
        self, what: str, limit: int, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self._what = what
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def acquire(self, *keys: str) -> None:
        """Count one event for every key, or raise RateLimited (counting nothing) if any key is at its limit."""
        if self._limit <= 0:
            return
        now = self._clock()
        wait = 0.0
        for key in keys:
            events = self._recent(key, now)
            if len(events) >= self._limit:
                wait = max(wait, events[0] + self._window - now)
        if wait > 0:
            raise errors.RateLimited(
                f"at most {self._limit} {self._what} per {self._window:g} s; try again in {math.ceil(wait)} s",
                details={errors.RETRY_AFTER_DETAIL: max(1, math.ceil(wait))},
            )
        for key in keys:
            self._events.setdefault(key, deque()).append(now)
        if len(self._events) > PRUNE_ABOVE_KEYS:
            for key in [key for key in self._events if not self._recent(key, now)]:
                del self._events[key]

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key, deque())
        while events and events[0] <= now - self._window:
            events.popleft()
        return events
