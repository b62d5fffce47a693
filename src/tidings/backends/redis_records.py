"""Records in the Redis store's database (webhook endpoints and their outbox), shared by
every node that uses it.

Keys, for prefix ``P`` and namespace ``N`` (beside those of :mod:`tidings.backends.redis`)::

    P:r:N   hash   key -> record
    P:q:N   zset   key, scored by its ready time in ms (records with a ready time only)

Each change is one script, so the two always agree, and a claim (which moves the score to
the end of its lease) is atomic across nodes.
"""

from __future__ import annotations

from tidings.backends.base import records_full
from tidings.backends.redis import unavailable
from tidings.backends.redis_store import RedisStore

__all__ = ["RedisRecords"]

# KEYS: hash, zset. ARGV: key, record, ready ms ('' = none), if_absent, limit ('' = none).
# Returns 1 when stored, 0 when left (if_absent), -1 when the namespace is full.
_PUT = """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if exists and ARGV[4] == '1' then return 0 end
if not exists and ARGV[5] ~= '' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
"""

# KEYS: hash, zset. ARGV: now ms, lease end ms, limit. Returns the claimed records.
# Scheduled events (redis_schedules) claim with it too: the same two keys, the same lease.
CLAIM_SCRIPT = """
local keys = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, key in ipairs(keys) do
  local record = redis.call('HGET', KEYS[1], key)
  if record then
    redis.call('ZADD', KEYS[2], ARGV[2], key)
    out[#out + 1] = record
  else
    redis.call('ZREM', KEYS[2], key)
  end
end
return out
"""

# KEYS: hash, zset. ARGV: key. Returns 1 when it was there.
_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class RedisRecords:
    """A :class:`~tidings.backends.base.Records` beside a :class:`RedisStore`."""

    def __init__(self, store: RedisStore) -> None:
        self._prefix = store.prefix
        self._client = store._client
        self._put = self._client.register_script(_PUT)
        self._claim = self._client.register_script(CLAIM_SCRIPT)
        self._delete = self._client.register_script(_DELETE)

    def _keys(self, namespace: str) -> list[str]:
        return [f"{self._prefix}:r:{namespace}", f"{self._prefix}:q:{namespace}"]

    async def put(
        self,
        namespace: str,
        key: str,
        record: bytes,
        *,
        ready: float | None,
        if_absent: bool = False,
        limit: int | None = None,
    ) -> bool:
        args = [
            key,
            record,
            "" if ready is None else _ms(ready),
            "1" if if_absent else "0",
            "" if limit is None else limit,
        ]
        with unavailable("store"):
            stored = await self._put(keys=self._keys(namespace), args=args)
        if stored == -1:
            assert limit is not None
            raise records_full(limit)
        return bool(stored)

    async def get(self, namespace: str, key: str) -> bytes | None:
        with unavailable("store"):
            record = await self._client.hget(self._keys(namespace)[0], key)
        return None if record is None else _bytes(record)

    async def delete(self, namespace: str, key: str) -> bool:
        with unavailable("store"):
            return bool(await self._delete(keys=self._keys(namespace), args=[key]))

    async def drop(self, namespace: str) -> None:
        with unavailable("store"):
            await self._client.delete(*self._keys(namespace))

    async def newest(self, namespace: str, *, limit: int = 1000) -> list[bytes]:
        with unavailable("store"):
            found = await self._client.hgetall(self._keys(namespace)[0])
        return [_bytes(found[key]) for key in sorted(found, reverse=True)[:limit]]

    async def claim(self, namespace: str, now: float, *, lease: float, limit: int) -> list[bytes]:
        with unavailable("store"):
            records: list[bytes] = await self._claim(
                keys=self._keys(namespace), args=[_ms(now), _ms(now + lease), limit]
            )
        return records

    async def ready_count(self, namespace: str) -> int:
        with unavailable("store"):
            return int(await self._client.zcard(self._keys(namespace)[1]))

    async def close(self) -> None:
        return None  # the store owns the connection
