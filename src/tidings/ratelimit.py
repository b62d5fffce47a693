"""Token-bucket rate limits keyed by IP address or client id.

:class:`Limiter` is what the gate and the publish policy use; they never know which
implementation they hold. :class:`RateLimiter` keeps its buckets in this process (one
node, or backends that do not share state); with a Redis broker or store, each bucket
lives in Redis (:class:`tidings.backends.redis_ratelimit.RedisRateLimiter`), so a limit
holds across every node and ``--workers`` process together.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Limiter", "RateLimiter"]


@runtime_checkable
class Limiter(Protocol):
    """Allow ``rate`` hits per ``per`` seconds per key, with bursts up to ``rate``.

    Contract (checked by ``tests/contract/test_ratelimit.py``): a full bucket allows
    ``rate`` hits at once; the next is refused with the seconds until one token is back
    (``per / rate`` after an emptied bucket); a refused hit takes nothing; a bucket
    refills at ``rate / per`` tokens per second, up to ``rate``; keys are independent.
    :meth:`acquire` never raises for a backend's failure: it falls back to a bucket in
    this process and counts it in :attr:`fallbacks`.
    """

    rate: float
    per: float

    @property
    def fallbacks(self) -> int:
        """Hits decided in this process because the shared backend could not be reached."""
        ...

    async def acquire(self, key: str) -> float | None:
        """Take one token for ``key``; ``None`` when allowed, else seconds to wait."""
        ...

    async def close(self) -> None: ...


class RateLimiter:
    """A :class:`Limiter` whose buckets live in this process, bounded in memory.

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

    @property
    def fallbacks(self) -> int:
        return 0  # nothing to fall back from

    async def acquire(self, key: str) -> float | None:
        return self.hit(key)

    async def close(self) -> None:
        pass

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
