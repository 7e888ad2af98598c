"""Per-principal request rates (``RUNYARD_RATE_LIMIT_PER_SECOND``): a token bucket per key.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; a request
takes one, or is refused with the seconds until one is there. Buckets live in this process's
memory, so each replica limits on its own (N replicas let a key make up to N times the rate).

Memory stays bounded: buckets are kept in least-recently-used order, and a bucket left alone
long enough to have refilled is the same as a new one, so it is dropped as soon as a new
bucket is made. Past ``max_buckets`` busy ones the least recently used goes too (its owner
gets a fresh, full bucket: a little leniency rather than unbounded memory).
"""

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from runyard.settings import Settings

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self._clock = clock
        #: key → [tokens, when they were counted], least recently used first
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._idle_seconds = burst / rate  # an untouched bucket is full again after this

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimiter | None":
        """The limiter the settings ask for, or None when rates are not limited (the default)."""
        rate = settings.rate_limit_per_second
        if rate is None:
            return None
        burst = settings.rate_limit_burst or max(1, math.ceil(rate))
        return cls(rate, burst)

    def hit(self, key: str) -> float:
        """Take a token from ``key``'s bucket: 0.0 when the request may go ahead, else the
        seconds until it may (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        self._buckets.move_to_end(key)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            oldest_key, (_, counted_at) = next(iter(buckets.items()))
            if now - counted_at < self._idle_seconds and len(buckets) < self.max_buckets:
                return
            del buckets[oldest_key]


def retry_after(wait: float) -> int:
    """``Retry-After`` in whole seconds, at least 1."""
    return max(1, math.ceil(wait))
