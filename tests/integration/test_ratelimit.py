"""Upload rate limits counted in real PostgreSQL: shared by every gateway replica."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from kazru.db.models import RateLimitEvent
from kazru.domain import errors
from kazru.domain.external_copies import NO_EXTERNAL_COPIES
from services.gateway.ratelimit import SlidingWindowLimiter
from services.janitor.expiry import Janitor
from tests.fakes.bus import RecordingBus


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def key() -> str:
    return f"owner:{uuid.uuid4()}"


async def test_window_slides_and_retry_after_says_when(database):
    clock, owner = Clock(), key()
    limiter = SlidingWindowLimiter(database, "uploads", 60.0, clock)
    await limiter.acquire({owner: 2})
    clock.now += 10
    await limiter.acquire({owner: 2})
    clock.now += 5
    with pytest.raises(errors.RateLimited) as refused:
        await limiter.acquire({owner: 2})
    assert refused.value.details[errors.RETRY_AFTER_DETAIL] == "45"  # the first event leaves the window at +60
    assert "at most 2 uploads per 60 s" in refused.value.message
    clock.now += 45
    await limiter.acquire({owner: 2})  # the first one has left the window


async def test_any_exhausted_key_refuses_and_a_refusal_counts_for_none(database):
    limiter = SlidingWindowLimiter(database, "uploads", 60.0, Clock())
    owner_a, owner_b, address_x, address_y = key(), key(), key(), key()
    await limiter.acquire({owner_a: 1, address_x: 1})
    with pytest.raises(errors.RateLimited):
        await limiter.acquire({owner_b: 1, address_x: 1})
    await limiter.acquire({owner_b: 1, address_y: 1})  # owner_b was not charged by the refusal


async def test_each_key_has_its_own_limit_and_the_refusal_names_the_one_reached(database):
    limiter = SlidingWindowLimiter(database, "uploads", 60.0, Clock())
    session, address = key(), key()
    await limiter.acquire({session: 1, address: 3})
    with pytest.raises(errors.RateLimited) as refused:
        await limiter.acquire({session: 1, address: 3})
    assert "at most 1 uploads" in refused.value.message
    # A key with limit 0 is neither limited nor counted: only `address` holds events now.
    for _ in range(2):
        await limiter.acquire({key(): 0, address: 3})
    with pytest.raises(errors.RateLimited) as refused:
        await limiter.acquire({key(): 5, address: 3})
    assert "at most 3 uploads" in refused.value.message


async def test_zero_means_unlimited_and_stores_nothing(database):
    limiter = SlidingWindowLimiter(database, "uploads", 60.0, Clock())
    async with database() as session:
        before = await session.scalar(select(func.count()).select_from(RateLimitEvent))
    for _ in range(20):
        await limiter.acquire({key(): 0})
    async with database() as session:
        assert await session.scalar(select(func.count()).select_from(RateLimitEvent)) == before


async def test_replicas_share_one_limit_even_when_racing(database):
    """Three gateway replicas (three limiters on one database) and 12 simultaneous uploads
    from one owner with a limit of 5: exactly 5 get through."""
    clock, owner = Clock(), key()
    replicas = [SlidingWindowLimiter(database, "uploads", 60.0, clock) for _ in range(3)]

    async def upload(index: int) -> bool:
        try:
            await replicas[index % 3].acquire({owner: 5})
            return True
        except errors.RateLimited:
            return False

    accepted = await asyncio.gather(*(upload(i) for i in range(12)))
    assert sum(accepted) == 5


async def test_keys_are_stored_hashed_and_the_janitor_drops_old_events(database, store, settings):
    address = "address:203.0.113.77"
    old = Clock()
    old.now = 1_000.0  # long ago
    await SlidingWindowLimiter(database, "uploads", 60.0, old).acquire({address: 5})
    async with database() as session:
        hashes = list(await session.scalars(select(RateLimitEvent.key_hash)))
    assert hashes and not any("203.0.113.77" in value for value in hashes)
    janitor = Janitor(settings, database, store, RecordingBus(), external_copies=NO_EXTERNAL_COPIES)
    assert await janitor.delete_old_rate_limit_events() >= 1
    async with database() as session:
        assert await session.scalar(select(func.count()).where(RateLimitEvent.at < 2_000.0)) == 0
