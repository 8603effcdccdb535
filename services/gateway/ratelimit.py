"""Sliding-window rate limits shared by every gateway replica, counted in PostgreSQL.

Each accepted event is a row (hashed key, time). A check takes a transaction-scoped
advisory lock on each of its keys, counts the keys' rows inside the window and adds
its own, so replicas racing for the last slot are serialised and N replicas still
allow the limit once, not N times. Keys are stored hashed, since they hold client
addresses and owner ids; a key's rows that left the window are deleted when the key
comes back, and the janitor deletes the rest.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db.models import RateLimitEvent
from kazru.domain import errors


class SlidingWindowLimiter:
    """At most a key's limit of events per `window_seconds`, each key with its own limit (0: none)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        what: str,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        self._sessions = sessions
        self._what = what
        self._window = window_seconds
        self._clock = clock

    async def acquire(self, limits: Mapping[str, int]) -> None:
        """Count one event for every key (key → its limit), or raise RateLimited (counting nothing)
        if any key is at its limit. Keys with limit 0 are not limited and not counted."""
        limited = {self._hash(key): limit for key, limit in limits.items() if limit > 0}
        if not limited:
            return
        now = self._clock()
        # Sorted, so two checks sharing keys lock them in the same order and cannot deadlock.
        hashed = sorted(limited)
        async with self._sessions.begin() as session:
            for key_hash in hashed:
                await session.execute(select(func.pg_advisory_xact_lock(_lock_id(key_hash))))
            await session.execute(
                delete(RateLimitEvent).where(
                    RateLimitEvent.key_hash.in_(hashed), RateLimitEvent.at <= now - self._window
                )
            )
            recent: dict[str, list[float]] = defaultdict(list)
            rows = await session.execute(
                select(RateLimitEvent.key_hash, RateLimitEvent.at)
                .where(RateLimitEvent.key_hash.in_(hashed))
                .order_by(RateLimitEvent.at)
            )
            for key_hash, at in rows:
                recent[key_hash].append(at)
            # A full key frees a slot when its oldest event that still counts leaves the window.
            waits = [
                (times[len(times) - limit] + self._window - now, limit)
                for key_hash, limit in limited.items()
                if len(times := recent[key_hash]) >= limit
            ]
            wait, limit = max(waits, default=(0.0, 0))
            if wait > 0:
                raise errors.RateLimited(
                    f"at most {limit} {self._what} per {self._window:g} s; try again in {math.ceil(wait)} s",
                    details={errors.RETRY_AFTER_DETAIL: max(1, math.ceil(wait))},
                )
            session.add_all(RateLimitEvent(key_hash=key_hash, at=now) for key_hash in hashed)

    def _hash(self, key: str) -> str:
        return hashlib.sha256(f"{self._what}|{key}".encode()).hexdigest()[:32]


def _lock_id(key_hash: str) -> int:
    """A signed 64-bit advisory lock id from the key's hash."""
    return int.from_bytes(bytes.fromhex(key_hash[:16]), "big", signed=True)
