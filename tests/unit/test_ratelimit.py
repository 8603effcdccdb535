import pytest

from kazru import errors
from services.gateway.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_slides_and_retry_after_says_when():
    clock = Clock()
    limiter = SlidingWindowLimiter("uploads", 2, 60.0, clock)
    limiter.acquire("owner:a")
    clock.now += 10
    limiter.acquire("owner:a")
    clock.now += 5
    with pytest.raises(errors.RateLimited) as refused:
        limiter.acquire("owner:a")
    assert refused.value.details[errors.RETRY_AFTER_DETAIL] == "45"  # the first event leaves the window at +60
    clock.now += 45
    limiter.acquire("owner:a")  # the first one has left the window


def test_any_exhausted_key_refuses_and_a_refusal_counts_for_none():
    limiter = SlidingWindowLimiter("uploads", 1, 60.0, Clock())
    limiter.acquire("owner:a", "address:x")
    with pytest.raises(errors.RateLimited):
        limiter.acquire("owner:b", "address:x")
    limiter.acquire("owner:b", "address:y")  # owner:b was not charged by the refusal


def test_zero_means_unlimited():
    limiter = SlidingWindowLimiter("uploads", 0, 60.0, Clock())
    for _ in range(100):
        limiter.acquire("owner:a")
