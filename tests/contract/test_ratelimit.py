"""The ``Limiter`` contract (``tidings.ratelimit.Limiter``), run against the in-process
bucket and the Redis bucket script, and what only the shared one promises: one bucket
for every node, expiry of quiet buckets, and a fallback when Redis cannot be reached.

Refill is checked without waiting: the in-process limiter gets a clock the test moves;
the Redis bucket's last counting time (``at``, in server milliseconds) is moved back,
which to the script is the same as that much time having passed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from tests import redis_support
from tidings.ratelimit import Limiter, RateLimiter

# Redis answers in real time: the waits it computes are off by the time between calls.
SLACK = 0.05


class Buckets(Protocol):
    """Limiters of one kind, and a way to let time pass for a key."""

    def __call__(self, rate: float, per: float) -> Limiter: ...

    async def advance(self, limiter: Limiter, key: str, seconds: float) -> None: ...


class LocalBuckets:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self, rate: float, per: float) -> Limiter:
        return RateLimiter(rate, per, clock=lambda: self.now)

    async def advance(self, limiter: Limiter, key: str, seconds: float) -> None:
        self.now += seconds


class RedisBuckets:
    def __init__(self) -> None:
        self.server = redis_support.redis_url()
        self.prefix = redis_support.unique_prefix()
        self.url = redis_support.with_options(self.server, prefix=self.prefix)
        self.made: list[Limiter] = []

    def __call__(self, rate: float, per: float) -> Limiter:
        from tidings.backends.redis_ratelimit import RedisRateLimiter

        limiter = RedisRateLimiter(self.url, rate, per, name="contract")
        self.made.append(limiter)
        return limiter

    async def advance(self, limiter: Limiter, key: str, seconds: float) -> None:
        import redis.asyncio as aioredis

        from tidings.backends.redis_ratelimit import RedisRateLimiter

        assert isinstance(limiter, RedisRateLimiter)
        client = aioredis.Redis.from_url(self.server)
        try:
            await client.hincrbyfloat(limiter.key_prefix + key, "at", -seconds * 1000)
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        for limiter in self.made:
            await limiter.close()
        await redis_support.delete_prefix(self.server, self.prefix)


@pytest.fixture(params=["memory", "redis"])
async def buckets(request: pytest.FixtureRequest) -> AsyncIterator[Buckets]:
    if request.param == "memory":
        yield LocalBuckets()
        return
    made = RedisBuckets()
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def key() -> str:
    return f"10.0.{uuid.uuid4().int % 256}.{uuid.uuid4().int % 256}-{uuid.uuid4().hex[:6]}"


async def _hits(limiter: Limiter, key: str, count: int) -> list[float | None]:
    return [await limiter.acquire(key) for _ in range(count)]


async def test_is_a_limiter(buckets: Buckets) -> None:
    assert isinstance(buckets(5, 60), Limiter)


async def test_a_burst_then_the_wait_for_one_token(buckets: Buckets, key: str) -> None:
    limiter = buckets(5, 60)
    assert await _hits(limiter, key, 5) == [None] * 5
    wait = await limiter.acquire(key)
    assert wait == pytest.approx(12.0, abs=SLACK)  # 60 s / 5 tokens
    assert await limiter.acquire("other-" + key) is None  # keys are independent


async def test_refill_is_proportional_and_a_refusal_takes_nothing(
    buckets: Buckets, key: str
) -> None:
    limiter = buckets(4, 1)
    assert await _hits(limiter, key, 4) == [None] * 4
    assert await limiter.acquire(key) == pytest.approx(0.25, abs=SLACK)
    await buckets.advance(limiter, key, 0.125)
    # Half a token back; the refused hit before took nothing.
    assert await limiter.acquire(key) == pytest.approx(0.125, abs=SLACK)
    await buckets.advance(limiter, key, 0.125)
    assert await limiter.acquire(key) is None


async def test_a_long_pause_refills_to_the_burst_only(buckets: Buckets, key: str) -> None:
    limiter = buckets(3, 60)
    assert await _hits(limiter, key, 3) == [None] * 3
    await buckets.advance(limiter, key, 3600)
    hits = await _hits(limiter, key, 4)
    assert hits[:3] == [None] * 3
    assert hits[3] == pytest.approx(20.0, abs=SLACK)


async def test_no_fallbacks_while_the_backend_answers(buckets: Buckets, key: str) -> None:
    limiter = buckets(2, 1)
    await _hits(limiter, key, 3)
    assert limiter.fallbacks == 0


# -- what only the shared (Redis) bucket promises ------------------------------------


@pytest.fixture
async def redis_buckets() -> AsyncIterator[RedisBuckets]:
    made = RedisBuckets()
    try:
        yield made
    finally:
        await made.aclose()


async def test_nodes_share_one_bucket(redis_buckets: RedisBuckets, key: str) -> None:
    node_a, node_b = redis_buckets(6, 60), redis_buckets(6, 60)
    hits = [await (node_a if n % 2 else node_b).acquire(key) for n in range(7)]
    assert hits[:6] == [None] * 6
    assert hits[6] == pytest.approx(10.0, abs=SLACK)


async def test_a_bucket_expires_when_it_would_be_full_again(
    redis_buckets: RedisBuckets, key: str
) -> None:
    import redis.asyncio as aioredis

    from tidings.backends.redis_ratelimit import RedisRateLimiter

    limiter = redis_buckets(10, 60)
    assert isinstance(limiter, RedisRateLimiter)
    await _hits(limiter, key, 3)
    client = aioredis.Redis.from_url(redis_buckets.server)
    try:
        ttl_ms = await client.pttl(limiter.key_prefix + key)
    finally:
        await client.aclose()
    # 3 tokens short of 10, at 6 s per token: full again in 18 s.
    assert 17_000 < ttl_ms <= 18_001


async def test_unreachable_redis_falls_back_to_this_process(key: str) -> None:
    from tidings.backends.redis_ratelimit import RedisRateLimiter

    redis_support.redis_url()  # the Redis tests' skip-or-require rule
    limiter = RedisRateLimiter(redis_support.closed_port_url(), 2, 60, name="contract")
    try:
        hits = await _hits(limiter, key, 3)
        assert hits[:2] == [None, None]
        # Still limited, per process; its bucket runs on real time, like Redis does.
        assert hits[2] == pytest.approx(30.0, abs=SLACK)
        assert limiter.fallbacks == 3
    finally:
        await limiter.close()
