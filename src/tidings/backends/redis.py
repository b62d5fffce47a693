"""Redis backends (``pip install 'tidings[redis]'``): a shared history store, a pub/sub
broker and cluster-wide presence, for several hub nodes acting as one hub.

``--store redis://host:6379/0`` and ``--broker redis://host:6379/0`` (``rediss://`` for
TLS). Query options of ours, removed before the URL reaches redis-py (which takes the
rest, e.g. ``socket_timeout``, ``max_connections``): ``prefix`` (default ``tidings``), the
namespace of every key and pub/sub channel, so several hubs can share one server; and,
for the store, ``idle_ttl`` (seconds, default 7 days), how long a channel's keys outlive
its last event.

Key layout, for prefix ``P`` and channel ``C`` (the implementation lives in
:mod:`tidings.backends.redis_store`, :mod:`tidings.backends.redis_broker`,
:mod:`tidings.backends.redis_ratelimit` and here)::

    P:m:C              hash    e = epoch, t = newest offset              (store)
    P:h:C              list    "<server ms> <event JSON>", oldest first  (store)
    P:i:<len C>:C:K    string  event JSON stored with idempotency key K  (store)
    P:p:C              hash    node -> "<expiry ms> <entry JSON>"        (presence)
    P:c                hash    node -> "<expiry ms> [node, [row…]]"      (connection listings)
    P:r:L:K            hash    t = tokens, at = server ms; limit L, key K (rate limits)
    P:<db>:events      pub/sub JSON arrays of events                     (broker)
    P:<db>:control     pub/sub control messages                          (broker)

Expiry: a channel's meta and history keys expire ``idle_ttl`` (or ``history_ttl`` when
longer) after its last append, so abandoned channels leave nothing behind; a channel that
comes back gets a new epoch, and ids from before are answered with ``reset``. The history
list alone expires ``history_ttl`` after the last append, when every event in it has
expired anyway. Idempotency keys live ``idempotency_ttl``; a presence hash lives as long as
its latest entry. Times are Redis server times, so nodes' clocks need not agree.

Order across nodes: a :class:`~tidings.backends.redis_broker.RedisBroker` built over a
Redis store on the same server and prefix appends and publishes in one script, so every
node receives a channel's events in offset order (details in
:mod:`tidings.backends.redis_broker`).

Pub/sub channels are global to a Redis server (not per database), hence the database
number in their names. Needs Redis 5 or later (scripts that read ``TIME`` and then write);
tested with 7. Redis Cluster is not supported: one script touches the keys of every
channel in a batch. Under an evicting ``maxmemory-policy`` an evicted meta hash means a
new epoch (clients get ``reset``), an evicted idempotency key a possible duplicate:
prefer ``noeviction``.

This module must never know about connections to clients: backends move events, the
hub fans them out.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tidings.backends.base import PresenceEntry
from tidings.errors import Unavailable

__all__ = [
    "DEFAULT_IDLE_TTL",
    "DEFAULT_PREFIX",
    "SOCKET_TIMEOUT",
    "RedisOptions",
    "RedisPresence",
    "connect",
    "parse_redis_url",
    "unavailable",
]

log = logging.getLogger("tidings.backends.redis")

DEFAULT_PREFIX = "tidings"
#: Seconds a channel's keys outlive its last event (7 days).
DEFAULT_IDLE_TTL = 7 * 24 * 3600.0
#: Bounds on every Redis call, in seconds, unless the URL says otherwise: a publish
#: against a dead server fails within these instead of hanging.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
#: Connections per client; callers wait at most ``SOCKET_TIMEOUT`` for a free one.
MAX_CONNECTIONS = 50


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """A backend URL split into what redis-py takes and what tidings takes."""

    url: str
    prefix: str = DEFAULT_PREFIX
    idle_ttl: float = DEFAULT_IDLE_TTL


def parse_redis_url(url: str) -> RedisOptions:
    """Split ``redis://…?prefix=…&idle_ttl=…`` into redis-py's URL and our options."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URL: scheme {parts.scheme!r} (use redis:// or rediss://)")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("prefix", "idle_ttl"):
            ours[name] = value
        elif name == "decode_responses":
            raise ValueError("decode_responses cannot be set: the Redis backends decode JSON")
        else:
            theirs.append((name, value))
    prefix = ours.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c.isspace() for c in prefix):
        raise ValueError(f"Redis key prefix {prefix!r} must be non-empty, without spaces")
    try:
        idle_ttl = float(ours.get("idle_ttl", DEFAULT_IDLE_TTL))
    except ValueError:
        raise ValueError(f"idle_ttl={ours['idle_ttl']!r} is not a number of seconds") from None
    if not math.isfinite(idle_ttl) or idle_ttl < 1:
        raise ValueError("idle_ttl must be at least 1 second")
    return RedisOptions(urlunsplit(parts._replace(query=urlencode(theirs))), prefix, idle_ttl)


def connect(url: str) -> aioredis.Redis:
    """A client with bounded waits and no retries of its own.

    No retries: a timed-out script may have run, and running an append twice would store
    an event twice. Failing fast lets the caller answer 503 (the client retries, with its
    idempotency key). Query options in ``url`` override these defaults.

    RESP2: with RESP3, redis-py 8 enables "maintenance notifications", and then no longer
    checks a pooled connection before handing it out, so after a Redis restart each
    pooled connection would fail one command ("Connection closed by server").
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        client_name="tidings",
        protocol=2,
    )
    return aioredis.Redis.from_pool(pool)


def server_identity(client: aioredis.Redis) -> tuple[Any, ...]:
    """What tells two clients apart as servers and databases (not as connections)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    return (
        pool.connection_class.__name__,
        kwargs.get("host"),
        kwargs.get("port"),
        kwargs.get("path"),
        int(kwargs.get("db") or 0),
    )


#: Seconds between two warnings about failing calls of one backend.
WARN_INTERVAL = 10.0
_last_warned: dict[str, float] = {}


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn a Redis or socket failure into :class:`~tidings.errors.Unavailable`.

    The message is meant for clients: it names the backend, not the server.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        # An outage fails every call: warn once per interval, not once per call.
        now = time.monotonic()
        loud = now - _last_warned.get(what, -math.inf) >= WARN_INTERVAL
        if loud:
            _last_warned[what] = now
        level = logging.WARNING if loud else logging.DEBUG
        log.log(level, "redis %s failed: %s: %s", what, type(exc).__name__, exc)
        raise Unavailable(f"the Redis {what} cannot be reached") from exc


def server_ms_lua() -> str:
    """Lua that sets ``now`` to the server's time in milliseconds."""
    return (
        "local clock = redis.call('TIME')\n"
        "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    )


# Presence entries are "<expiry ms> <JSON>", so that expired ones can be told apart
# without decoding them. The hash itself expires with its latest entry, so a channel
# whose nodes all died leaves nothing behind; expired entries of live channels are
# dropped lazily, by ``get``.
_PRESENCE_UPDATE = (
    server_ms_lua()
    + """
local node = ARGV[1]
local ttl = tonumber(ARGV[2])
local stamp = string.format('%d', now + ttl) .. ' '
for i, key in ipairs(KEYS) do
  local entry = ARGV[2 + i]
  if entry == '' then
    redis.call('HDEL', key, node)
  else
    redis.call('HSET', key, node, stamp .. entry)
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
return 0
"""
)

_PRESENCE_GET = (
    server_ms_lua()
    + """
local fields = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #fields, 2 do
  local value = fields[i + 1]
  local space = string.find(value, ' ', 1, true)
  if space and tonumber(string.sub(value, 1, space - 1)) > now then
    live[#live + 1] = string.sub(value, space + 1)
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return live
"""
)


class RedisPresence:
    """Presence shared by every node: one hash per channel, one field per node."""

    def __init__(self, url: str) -> None:
        options = parse_redis_url(url)
        self.prefix = options.prefix
        self._client = connect(options.url)
        self._update = self._client.register_script(_PRESENCE_UPDATE)
        self._get = self._client.register_script(_PRESENCE_GET)
        self._listing_key = f"{self.prefix}:c"
        self._closed = False

    def _key(self, channel: str) -> str:
        return f"{self.prefix}:p:{channel}"

    async def update(self, node: str, entries: dict[str, PresenceEntry], ttl: float) -> None:
        if not entries:
            return
        keys = [self._key(channel) for channel in entries]
        values = [
            orjson.dumps({"c": entry.connections, "k": list(entry.clients)})
            if entry.connections > 0
            else b""
            for entry in entries.values()
        ]
        with unavailable("presence"):
            await self._update(keys=keys, args=[node, max(1, math.ceil(ttl * 1000)), *values])

    async def get(self, channel: str) -> PresenceEntry:
        with unavailable("presence"):
            raw = await self._get(keys=[self._key(channel)])
        connections = 0
        clients: set[str] = set()
        for item in raw:
            entry = orjson.loads(item)
            connections += int(entry["c"])
            clients.update(entry["k"])
        return PresenceEntry(connections, tuple(sorted(clients)))

    async def update_listing(self, node: str, rows: Sequence[Any], ttl: float) -> None:
        # One hash for every node's listing, [node, rows] in each field (the read script
        # answers values only): the same scripts as a channel's presence.
        value = orjson.dumps([node, list(rows)]) if rows else b""
        with unavailable("presence"):
            await self._update(
                keys=[self._listing_key], args=[node, max(1, math.ceil(ttl * 1000)), value]
            )

    async def listings(self) -> dict[str, list[Any]]:
        with unavailable("presence"):
            raw = await self._get(keys=[self._listing_key])
        found: dict[str, list[Any]] = {}
        for item in raw:
            node, rows = orjson.loads(item)
            found[node] = rows
        return found

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
