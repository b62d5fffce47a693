"""Pluggable backends, chosen by URL: ``memory://``, ``sqlite:///path``, ``redis://…``.

A :class:`~tidings.backends.base.Store` keeps history (and assigns event positions); a
:class:`~tidings.backends.base.Broker` appends events to its store and moves them, and
control messages, between hub nodes. Both are small interfaces with their contracts in
their docstrings; every implementation passes the same contract test suite.
Implementations beyond memory are imported only when their scheme is asked for, so their
dependencies stay optional.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings.backends.base import (
    Broker,
    NewEvent,
    Presence,
    PresenceEntry,
    Records,
    Schedules,
    Store,
    StoreLimits,
)
from tidings.ratelimit import Limiter, RateLimiter

__all__ = [
    "Broker",
    "NewEvent",
    "Presence",
    "PresenceEntry",
    "Store",
    "StoreLimits",
    "broker_from_url",
    "limiter_for",
    "presence_from_url",
    "records_for",
    "redact_url",
    "schedules_for",
    "store_from_url",
]


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"backend URL {url!r} has no scheme (memory://, sqlite:///…, redis://…)")
    return scheme.lower()


_REDIS_SCHEMES = ("redis", "rediss")


def _require_redis() -> None:
    """Fail with the fix when a Redis URL is used without the ``redis`` extra."""
    import importlib.util

    if importlib.util.find_spec("redis") is None:
        raise ImportError("Redis backends need the redis package: pip install 'tidings[redis]'")


def store_from_url(url: str, limits: StoreLimits) -> Store:
    """Build the store a URL names."""
    scheme = _scheme(url)
    if scheme == "memory":
        from tidings.backends.memory import MemoryStore

        return MemoryStore(limits)
    if scheme == "sqlite":
        from tidings.backends.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, limits)
    if scheme in _REDIS_SCHEMES:
        _require_redis()
        from tidings.backends.redis_store import RedisStore

        return RedisStore(url, limits)
    raise ValueError(
        f"unknown store scheme {scheme!r}: use memory://, sqlite:///path or redis://host"
    )


def schedules_for(store: Store) -> Schedules:
    """Where scheduled events wait: beside ``store``'s history, in the same file or
    database, so they are exactly as durable (and as shared between nodes) as it is."""
    from tidings.backends.memory import MemoryStore

    if isinstance(store, MemoryStore):
        from tidings.backends.memory_schedules import MemorySchedules

        return MemorySchedules()
    from tidings.backends.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from tidings.backends.sqlite_schedules import SQLiteSchedules

        return SQLiteSchedules(store)
    if type(store).__name__ == "RedisStore":
        from tidings.backends.redis_schedules import RedisSchedules

        return RedisSchedules(store)  # type: ignore[arg-type]
    # A store of the application's own: scheduled events live in this process.
    from tidings.backends.memory_schedules import MemorySchedules

    return MemorySchedules()


def records_for(store: Store) -> Records:
    """Where webhook endpoints and their outbox are kept: beside ``store``'s history, so
    they are exactly as durable (and as shared between nodes) as it is."""
    from tidings.backends.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from tidings.backends.sqlite_records import SQLiteRecords

        return SQLiteRecords(store)
    if type(store).__name__ == "RedisStore":
        from tidings.backends.redis_records import RedisRecords

        return RedisRecords(store)  # type: ignore[arg-type]
    # Memory (or a store of the application's own): kept in this process.
    from tidings.backends.memory_records import MemoryRecords

    return MemoryRecords()


def broker_from_url(url: str, store: Store) -> Broker:
    """Build the broker a URL names, appending to ``store``."""
    scheme = _scheme(url)
    if scheme == "memory":
        from tidings.backends.memory import MemoryBroker

        return MemoryBroker(store)
    if scheme in _REDIS_SCHEMES:
        _require_redis()
        from tidings.backends.redis_broker import RedisBroker

        return RedisBroker(url, store)
    raise ValueError(f"unknown broker scheme {scheme!r}: use memory:// or redis://host")


def presence_from_url(url: str) -> Presence | None:
    """The presence backend that goes with a broker URL (presence is cluster-wide state).

    ``None`` for the memory broker: a single node answers from its own registry.
    """
    scheme = _scheme(url)
    if scheme == "memory":
        return None
    if scheme in _REDIS_SCHEMES:
        _require_redis()
        from tidings.backends.redis import RedisPresence

        return RedisPresence(url)
    raise ValueError(f"unknown broker scheme {scheme!r}: use memory:// or redis://host")


def limiter_for(urls: Sequence[str], rate: float, per: float, *, name: str) -> Limiter:
    """A rate limiter shared through the first Redis URL of ``urls`` (the broker's, then
    the store's), so that the limit holds across nodes; one in this process otherwise.
    ``name`` keeps this limit's buckets apart from another's."""
    for url in urls:
        if _scheme(url) in _REDIS_SCHEMES:
            _require_redis()
            from tidings.backends.redis_ratelimit import RedisRateLimiter

            return RedisRateLimiter(url, rate, per, name=name)
    return RateLimiter(rate, per)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and errors."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
