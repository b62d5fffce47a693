"""Token-bucket rate limits keyed by IP address or client id, bounded in memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allow ``rate`` hits per ``per`` seconds per key, with bursts up to ``rate``.

    At most ``max_keys`` keys are tracked; the least recently used are forgotten first
    (forgetting a key only ever gives it a full bucket again).
    """

    def __init__(
        self,
        rate: float,
        per: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.per = per
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, key: str) -> float | None:
        """Take one token for ``key``; ``None`` when allowed, else seconds to wait."""
        now = self._clock()
        capacity = self.rate
        tokens, last = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate / self.per)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            allowed = None
        else:
            self._buckets[key] = (tokens, now)
            allowed = (1.0 - tokens) * self.per / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed
