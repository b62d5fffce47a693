"""The Redis store: channel histories every hub node shares (key layout: :mod:`.redis`).

Each call is one Lua script, so it is atomic and one round trip however many events and
channels a batch holds. Appending assigns the offset (``HINCRBY`` on the channel's meta
hash), stores the event, trims the history to ``history_size`` and ``history_ttl``,
records the idempotency key, refreshes the keys' expiry and, when asked by a
:class:`~tidings.backends.redis_broker.RedisBroker` on the same Redis, publishes the
events. Because
Redis runs one script at a time, offsets are assigned in the order the events are
published, whichever node appends: per channel, delivery order *is* offset order.

The offsets in a history list are consecutive and end at the meta hash's ``t``, so the
event with offset ``o`` sits at index ``o - (t - LLEN + 1)``: reads need no scan.

An event's JSON is made once, by the node that publishes it (all of it but the id, which
only the script knows); the script keeps it, replays it for idempotency keys and
publishes it as it is.

A channel's epoch is drawn by the first script that finds no meta hash, read or append:
a reader must learn the position an empty channel's first event will follow. Reading a
channel therefore creates its meta hash (which expires after ``idle_ttl``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from tidings.backends.base import NewEvent, StoreLimits
from tidings.backends.redis import (
    connect,
    parse_redis_url,
    server_identity,
    server_ms_lua,
    unavailable,
)
from tidings.core.events import Event, Position, new_epoch
from tidings.core.history import ChannelHistory, HistoryPage

__all__ = ["RedisStore"]

# Lua helper: drop the history's head while it is older than ``ttl`` ms.
_EXPIRE_HEAD = """
local function expire_head(hist, ttl, now)
  while true do
    local head = redis.call('LINDEX', hist, 0)
    if not head then return end
    local space = string.find(head, ' ', 1, true)
    if now - tonumber(string.sub(head, 1, space - 1)) <= ttl then return end
    redis.call('LPOP', hist)
  end
end
"""

# KEYS: per event, meta, history and idempotency key (the meta key again when none).
# ARGV: size, history ttl ms (0: none), history expiry ms, meta expiry ms, idempotency
# ms, epoch for new channels, pub/sub channel ('' : none), then per event its JSON
# without the leading '{"id":…,' and '1' when it has an idempotency key.
# Returns per event 1, epoch, offset (stored now) or 0, JSON, 0 (an idempotent replay).
_APPEND = (
    server_ms_lua()
    + _EXPIRE_HEAD
    + """
local size, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local hist_ms, meta_ms, key_ms = ARGV[3], ARGV[4], ARGV[5]
local fresh_epoch, pubsub = ARGV[6], ARGV[7]
local stamp = string.format('%d', now) .. ' '
local out, published = {}, {}
for i = 1, #KEYS / 3 do
  local meta, hist, idem = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local body, keyed = ARGV[6 + 2 * i], ARGV[7 + 2 * i] == '1'
  local seen = keyed and redis.call('GET', idem)
  if seen then
    out[#out + 1] = 0; out[#out + 1] = seen; out[#out + 1] = 0
  else
    local epoch = redis.call('HGET', meta, 'e')
    if not epoch then
      -- A new (or forgotten) channel: whatever history is left belongs to no epoch.
      epoch = fresh_epoch
      redis.call('DEL', hist)
      redis.call('HSET', meta, 'e', epoch)
    end
    local offset = string.format('%d', redis.call('HINCRBY', meta, 't', 1))
    local json = '{"id":"' .. epoch .. '-' .. offset .. '",' .. body
    redis.call('RPUSH', hist, stamp .. json)
    if size > 0 then
      redis.call('LTRIM', hist, -size, -1)
    else
      redis.call('DEL', hist)
    end
    if ttl > 0 then expire_head(hist, ttl, now) end
    redis.call('PEXPIRE', hist, hist_ms)
    redis.call('PEXPIRE', meta, meta_ms)
    if keyed then redis.call('SET', idem, json, 'PX', key_ms) end
    if pubsub ~= '' then published[#published + 1] = json end
    out[#out + 1] = 1; out[#out + 1] = epoch; out[#out + 1] = offset
  end
end
if #published > 0 then
  redis.call('PUBLISH', pubsub, '[' .. table.concat(published, ',') .. ']')
end
return out
"""
)

# KEYS: meta, history. ARGV: mode ('newest', 'since' or 'bad'), since epoch, since
# offset, limit, history ttl ms (0: none), epoch for a new channel, meta expiry ms.
# Returns epoch, newest offset, complete (1/0), then the events' history entries.
# Expired entries are skipped, not removed: the next append removes them.
_READ = (
    server_ms_lua()
    + """
local meta, hist = KEYS[1], KEYS[2]
local mode, limit, ttl = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HMGET', meta, 'e', 't')
local epoch, top = state[1], tonumber(state[2] or '0')
if not epoch then
  epoch, top = ARGV[6], 0
  redis.call('DEL', hist)
  redis.call('HSET', meta, 'e', epoch, 't', 0)
  redis.call('PEXPIRE', meta, ARGV[7])
end
local n = redis.call('LLEN', hist)
local first = top - n + 1
local skip = 0
if ttl > 0 then
  while skip < n do
    local entry = redis.call('LINDEX', hist, skip)
    local space = string.find(entry, ' ', 1, true)
    if now - tonumber(string.sub(entry, 1, space - 1)) <= ttl then break end
    skip = skip + 1
  end
end
local oldest = first + skip
local from, complete = oldest, 0
if mode == 'newest' then
  from, complete = math.max(oldest, top - limit + 1), 1
elseif mode == 'since' and ARGV[2] == epoch and tonumber(ARGV[3]) <= top then
  local since = tonumber(ARGV[3])
  if since >= oldest - 1 then complete = 1 end
  from = math.max(oldest, since + 1)
end
local out = {epoch, top, complete}
local last = math.min(top, from + limit - 1)
if from <= last then
  local entries = redis.call('LRANGE', hist, from - first, last - first)
  for i = 1, #entries do out[#out + 1] = entries[i] end
end
return out
"""
)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# KEYS: history lists. ARGV: history ttl ms (0: none). For each list, after dropping
# what has expired: its length and its newest entry (false when empty).
_CHANNELS = (
    server_ms_lua()
    + _EXPIRE_HEAD
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i, hist in ipairs(KEYS) do
  if ttl > 0 then expire_head(hist, ttl, now) end
  out[2 * i - 1] = redis.call('LLEN', hist)
  out[2 * i] = redis.call('LINDEX', hist, -1)
end
return out
"""
)

#: History lists read per script call when listing channels.
_CHANNELS_BATCH = 500


def _decode(entry: bytes) -> Event:
    _, _, json = entry.partition(b" ")
    return Event.from_dict(orjson.loads(json))


class RedisStore:
    """Channel histories in Redis, shared by every node that uses the same URL."""

    def __init__(self, url: str, limits: StoreLimits | None = None) -> None:
        options = parse_redis_url(url)
        self.limits = limits or StoreLimits()
        self.prefix = options.prefix
        self._client = connect(options.url)
        history_ttl = self.limits.history_ttl
        self._ttl_ms = _ms(history_ttl) if history_ttl is not None else 0
        # The history list outlives its newest event by history_ttl (plus a margin, so the
        # key never expires before the event would), else by idle_ttl; the meta hash
        # always outlives the list, or a reused epoch could meet a stale list.
        self._history_ms = self._ttl_ms + 1000 if self._ttl_ms else _ms(options.idle_ttl)
        self._meta_ms = max(_ms(options.idle_ttl), self._history_ms)
        self._append = self._client.register_script(_APPEND)
        self._read = self._client.register_script(_READ)
        self._channels = self._client.register_script(_CHANNELS)
        self._closed = False

    # -- keys ----------------------------------------------------------------------------

    def _meta_key(self, channel: str) -> str:
        return f"{self.prefix}:m:{channel}"

    def _history_key(self, channel: str) -> str:
        return f"{self.prefix}:h:{channel}"

    def _idempotency_key(self, channel: str, key: str) -> str:
        # The channel's length makes "a:b" + "c" and "a" + "b:c" different keys.
        return f"{self.prefix}:i:{len(channel)}:{channel}:{key}"

    @property
    def server(self) -> tuple[Any, ...]:
        """Which Redis server and database this store uses."""
        return server_identity(self._client)

    # -- Store ----------------------------------------------------------------------------

    async def append(
        self, events: Sequence[NewEvent], *, publish_to: str | None = None
    ) -> list[tuple[Event, bool]]:
        """Store ``events``; with ``publish_to``, also publish the ones stored now on that
        pub/sub channel, in the same atomic step (see the module docstring)."""
        if not events:
            return []
        keys: list[str] = []
        per_event: list[bytes | str] = []
        for new in events:
            meta = self._meta_key(new.channel)
            key = new.idempotency_key or None  # as the memory store: "" is no key
            keys += [
                meta,
                self._history_key(new.channel),
                meta if key is None else self._idempotency_key(new.channel, key),
            ]
            body = orjson.dumps(
                {
                    "channel": new.channel,
                    "type": new.type,
                    "data": new.data,
                    "timestamp": new.timestamp,
                }
            )
            per_event += [body[1:], "0" if key is None else "1"]
        args: list[Any] = [
            self.limits.history_size,
            self._ttl_ms,
            self._history_ms,
            self._meta_ms,
            _ms(self.limits.idempotency_ttl),
            new_epoch(),
            publish_to or "",
            *per_event,
        ]
        with unavailable("store"):
            raw = await self._append(keys=keys, args=args)
        stored: list[tuple[Event, bool]] = []
        for i, new in enumerate(events):
            created, first, second = raw[3 * i : 3 * i + 3]
            if not created:
                stored.append((Event.from_dict(orjson.loads(first)), False))
                continue
            position = Position(first.decode(), int(second))
            event = Event(new.channel, new.type, new.data, new.timestamp, position)
            stored.append((event, True))
        return stored

    async def read(
        self, channel: str, *, since: str | None = None, limit: int = 100
    ) -> HistoryPage:
        limit = max(0, limit)
        mode, since_epoch, since_offset = "newest", "", 0
        if since is not None:
            position = Position.parse(since)
            if position is None:
                mode = "bad"
            else:
                mode, since_epoch, since_offset = "since", position.epoch, position.offset
        with unavailable("store"):
            raw = await self._read(
                keys=[self._meta_key(channel), self._history_key(channel)],
                args=[
                    mode,
                    since_epoch,
                    since_offset,
                    limit,
                    self._ttl_ms,
                    new_epoch(),
                    self._meta_ms,
                ],
            )
        epoch, top, complete, *entries = raw
        return HistoryPage(
            [_decode(entry) for entry in entries],
            bool(complete),
            Position(epoch.decode(), int(top)),
        )

    async def channels(self, *, limit: int = 1000) -> list[ChannelHistory]:
        head = f"{self.prefix}:h:"
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in head) + "*"
        found: list[ChannelHistory] = []
        with unavailable("store"):
            keys = [key async for key in self._client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), _CHANNELS_BATCH):
                batch = keys[start : start + _CHANNELS_BATCH]
                raw = await self._channels(keys=batch, args=[self._ttl_ms])
                for i, key in enumerate(batch):
                    length, newest = raw[2 * i], raw[2 * i + 1]
                    if length and newest:
                        channel = key.decode()[len(head) :]
                        found.append(
                            ChannelHistory(channel, int(length), _decode(newest).timestamp)
                        )
        found.sort(key=lambda c: c.last_event_at, reverse=True)
        return found[:limit]

    async def ping(self) -> None:
        with unavailable("store"):
            await self._client.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
