"""The token bucket behind ``RUNYARD_RATE_LIMIT_PER_SECOND``, on a fake clock."""

import pytest

from runyard.http.ratelimit import RateLimiter, retry_after
from runyard.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.hit("a") == pytest.approx(0.5)  # a refusal takes nothing
    assert limiter.hit("b") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.hit("a") == 0.0
    assert limiter.hit("a") > 0
    clock.now += 60
    assert [limiter.hit("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # never beyond burst


def test_idle_buckets_are_dropped_and_memory_is_capped() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, max_buckets=100, clock=clock)
    for n in range(50):
        limiter.hit(f"k{n}")
    assert len(limiter) == 50
    clock.now += 2.0  # all of them are full again: the same as no bucket at all
    limiter.hit("fresh")
    assert len(limiter) == 1
    for n in range(500):  # busy keys beyond the cap push the least recently used out
        limiter.hit(f"busy{n}")
    assert len(limiter) == 100


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(w) for w in (0.001, 0.5, 1.0, 1.01, 2.5)] == [1, 1, 1, 2, 3]


def test_the_limiter_is_off_unless_a_rate_is_set() -> None:
    assert RateLimiter.from_settings(Settings()) is None
    limiter = RateLimiter.from_settings(Settings(rate_limit_per_second=2.5))
    assert limiter is not None and (limiter.rate, limiter.burst) == (2.5, 3.0)
    limiter = RateLimiter.from_settings(Settings(rate_limit_per_second=0.1, rate_limit_burst=7))
    assert limiter is not None and limiter.burst == 7.0
