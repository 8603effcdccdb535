"""Upload rate limits counted in real PostgreSQL: shared by every gateway replica."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from kazru import errors
from kazru.db.models import RateLimitEvent
from services.gateway.ratelimit import SlidingWindowLimiter
from services.janitor.expiry import Janitor


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def key() -> str:
    return f"owner:{uuid.uuid4()}"


async def test_window_slides_and_retry_after_says_when(database):
    clock, owner = Clock(), key()
    limiter = SlidingWindowLimiter(database, "uploads", 2, 60.0, clock)
    await limiter.acquire(owner)
    clock.now += 10
    await limiter.acquire(owner)
    clock.now += 5
    with pytest.raises(errors.RateLimited) as refused:
        await limiter.acquire(owner)
    assert refused.value.details[errors.RETRY_AFTER_DETAIL] == "45"  # the first event leaves the window at +60
    clock.now += 45
    await limiter.acquire(owner)  # the first one has left the window


async def test_any_exhausted_key_refuses_and_a_refusal_counts_for_none(database):
    limiter = SlidingWindowLimiter(database, "uploads", 1, 60.0, Clock())
    owner_a, owner_b, address_x, address_y = key(), key(), key(), key()
    await limiter.acquire(owner_a, address_x)
    with pytest.raises(errors.RateLimited):
        await limiter.acquire(owner_b, address_x)
    await limiter.acquire(owner_b, address_y)  # owner_b was not charged by the refusal


async def test_zero_means_unlimited_and_stores_nothing(database):
    limiter = SlidingWindowLimiter(database, "uploads", 0, 60.0, Clock())
    async with database() as session:
        before = await session.scalar(select(func.count()).select_from(RateLimitEvent))
    for _ in range(20):
        await limiter.acquire(key())
    async with database() as session:
        assert await session.scalar(select(func.count()).select_from(RateLimitEvent)) == before


async def test_replicas_share_one_limit_even_when_racing(database):
    """Three gateway replicas (three limiters on one database) and 12 simultaneous uploads
    from one owner with a limit of 5: exactly 5 get through."""
    clock, owner = Clock(), key()
    replicas = [SlidingWindowLimiter(database, "uploads", 5, 60.0, clock) for _ in range(3)]

    async def upload(index: int) -> bool:
        try:
            await replicas[index % 3].acquire(owner)
            return True
        except errors.RateLimited:
            return False

    accepted = await asyncio.gather(*(upload(i) for i in range(12)))
    assert sum(accepted) == 5


async def test_keys_are_stored_hashed_and_the_janitor_drops_old_events(database, store, settings):
    address = "address:203.0.113.77"
    old = Clock()
    old.now = 1_000.0  # long ago
    await SlidingWindowLimiter(database, "uploads", 5, 60.0, old).acquire(address)
    async with database() as session:
        hashes = list(await session.scalars(select(RateLimitEvent.key_hash)))
    assert hashes and not any("203.0.113.77" in value for value in hashes)
    janitor = Janitor(settings, database, store)
    assert await janitor.delete_old_rate_limit_events() >= 1
    async with database() as session:
        assert await session.scalar(select(func.count()).where(RateLimitEvent.at < 2_000.0)) == 0
