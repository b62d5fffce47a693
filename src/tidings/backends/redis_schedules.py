"""Scheduled events in the Redis store's database, shared by every node that uses it.

Keys, for prefix ``P`` (beside those listed in :mod:`tidings.backends.redis`)::

    P:s:all   hash   key -> scheduled entry JSON
    P:s:due   zset   key, scored by when a claim may next take it (ms): its due time,
                     or the end of the lease a node holds

Every change is one script, so the hash and the sorted set always agree, and a claim
(which moves the score to the end of its lease) is atomic across nodes: no two nodes get
the same entry within a lease. Entries do not expire: they wait for their time.
"""

from __future__ import annotations

from tidings.backends.base import schedules_full
from tidings.backends.redis import unavailable
from tidings.backends.redis_records import CLAIM_SCRIPT
from tidings.backends.redis_store import RedisStore
from tidings.core.scheduled import Scheduled

__all__ = ["RedisSchedules"]

# KEYS: all, due. ARGV: key, record, at ms, limit. Returns the replaced record, or
# false; -1 when full.
_PUT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return old
"""

# KEYS: all, due. ARGV: key. Returns the removed record, or false.
_CANCEL = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return old
"""


# KEYS: all, due. ARGV: key, version. Removes the entry if it is still that version.
_DONE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record and cjson.decode(record)['version'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
"""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class RedisSchedules:
    """A :class:`~tidings.backends.base.Schedules` beside a :class:`RedisStore`, on its
    connection and key prefix."""

    def __init__(self, store: RedisStore) -> None:
        client = store._client
        self._keys = [f"{store.prefix}:s:all", f"{store.prefix}:s:due"]
        self._client = client
        self._put = client.register_script(_PUT)
        self._cancel = client.register_script(_CANCEL)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._done = client.register_script(_DONE)

    async def put(self, entry: Scheduled, *, limit: int) -> Scheduled | None:
        with unavailable("store"):
            old = await self._put(
                keys=self._keys, args=[entry.key, entry.dumps(), _ms(entry.at), limit]
            )
        if old == -1:
            raise schedules_full(limit)
        return Scheduled.loads(old) if old else None

    async def get(self, key: str) -> Scheduled | None:
        with unavailable("store"):
            record = await self._client.hget(self._keys[0], key)
        return Scheduled.loads(record) if record else None

    async def cancel(self, key: str) -> Scheduled | None:
        with unavailable("store"):
            old = await self._cancel(keys=self._keys, args=[key])
        return Scheduled.loads(old) if old else None

    async def pending(self, *, channel: str | None = None, limit: int = 1000) -> list[Scheduled]:
        found: list[Scheduled] = []
        with unavailable("store"):
            async for _, record in self._client.hscan_iter(self._keys[0], count=500):
                entry = Scheduled.loads(record)
                if channel is None or entry.channel == channel:
                    found.append(entry)
        found.sort(key=lambda e: (e.at, e.key))
        return found[:limit]

    async def claim(self, now: float, *, lease: float, limit: int) -> list[Scheduled]:
        with unavailable("store"):
            records = await self._claim(keys=self._keys, args=[_ms(now), _ms(now + lease), limit])
        return [Scheduled.loads(record) for record in records]

    async def done(self, entry: Scheduled) -> None:
        with unavailable("store"):
            await self._done(keys=self._keys, args=[entry.key, entry.version])

    async def next_due(self) -> float | None:
        with unavailable("store"):
            first = await self._client.zrange(self._keys[1], 0, 0, withscores=True)
        return float(first[0][1]) / 1000 if first else None

    async def count(self) -> int:
        with unavailable("store"):
            return int(await self._client.hlen(self._keys[0]))

    async def close(self) -> None:
        return None  # the store owns the connection
