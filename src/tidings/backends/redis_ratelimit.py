"""Rate limits shared by every node: one token bucket per key, kept in Redis.

Each bucket is a hash ``P:r:<limit>:<key>`` (``t`` = tokens, ``at`` = when counted, in
Redis server milliseconds), read, refilled, taken from and written back by one script,
so concurrent hits from any number of nodes are counted exactly once each, and the
nodes' clocks never matter. A bucket expires when it would be full again: a key that is
quiet costs nothing.

**Redis unreachable.** A limit is abuse protection, and Redis being down must not turn
into refusing every client: the limiter falls back to a bucket in this process (the
limit then holds per node, never not at all), counts each such decision
(``tidings_rate_limit_fallbacks``) and warns in the log at most every 10 s. After a
failure it does not try Redis again for ``RETRY_AFTER`` seconds, so a server that does
not answer costs one timeout, not one per connection. Publishes need Redis anyway and
are answered 503 meanwhile by the broker.

This module never sees client connections.
"""

from __future__ import annotations

import time

from tidings.backends.redis import connect, parse_redis_url, unavailable
from tidings.errors import Unavailable
from tidings.ratelimit import RateLimiter

__all__ = ["RETRY_AFTER", "TAKE_SCRIPT", "RedisRateLimiter"]

#: Seconds a limiter decides in this process after Redis failed, before trying it again.
RETRY_AFTER = 1.0

# KEYS[1]: the bucket. ARGV: capacity (tokens, also the refill per period), period (ms).
# Returns the wait in ms as a string: '0' when the hit was allowed. Numbers go out as
# strings: Redis would truncate a Lua number to an integer.
TAKE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local capacity, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
  tokens, at = capacity, now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * capacity / period)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) * period / capacity
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
-- Once full again, the bucket is as good as absent: it expires then.
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * period / capacity) + 1)
return string.format('%.17g', wait)
"""


class RedisRateLimiter:
    """A :class:`~tidings.ratelimit.Limiter` whose buckets live in Redis, shared by
    every node on the same server, database and prefix. ``name`` tells this limit's
    buckets from another's (``connections``, ``publishes``)."""

    def __init__(self, url: str, rate: float, per: float, *, name: str) -> None:
        options = parse_redis_url(url)
        self.rate = rate
        self.per = per
        self.key_prefix = f"{options.prefix}:r:{name}:"
        self._client = connect(options.url)
        self._take = self._client.register_script(TAKE_SCRIPT)
        self._args = (repr(float(rate)), repr(float(per) * 1000.0))
        self._local = RateLimiter(rate, per)
        self._fallbacks = 0
        self._retry_at = 0.0
        self._closed = False

    @property
    def fallbacks(self) -> int:
        return self._fallbacks

    async def acquire(self, key: str) -> float | None:
        if time.monotonic() >= self._retry_at:
            try:
                with unavailable("rate limiter"):
                    raw = await self._take(keys=[self.key_prefix + key], args=self._args)
            except Unavailable:
                self._retry_at = time.monotonic() + RETRY_AFTER
            else:
                wait = float(raw) / 1000.0
                return wait if wait > 0 else None
        self._fallbacks += 1
        return self._local.hit(key)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
