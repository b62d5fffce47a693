"""The Redis broker: events and control messages between hub nodes over pub/sub.

Two pub/sub channels per prefix and database (see :mod:`.redis`): ``…:events`` carries
JSON arrays of events (each serialised once, as ``Event.to_dict()``), ``…:control``
carries control messages. One reader task per node receives both on a connection of its
own and hands them to the hub.

**Order.** Redis delivers a pub/sub channel's messages to each subscriber in the order
they were published. What needs care is the order *between* storing and publishing: if
node A stores offset 5 and node B offset 6, B may publish first. When the broker's store
is a :class:`~tidings.backends.redis_store.RedisStore` on the same Redis server, database
and prefix (the usual set-up: one URL for both), that window does not exist: the store's
append script publishes the events itself, in the same atomic step that assigns their
offsets, so every node receives each channel's events in offset order. With another
store (SQLite, or a Redis elsewhere), events are published after they are stored, and
nodes publishing to one channel at once can interleave; the hub's gap/duplicate guard on
positions then fills any hole from the store.

**Failure.** Nothing is retried behind the caller's back: :meth:`publish` raises
:class:`~tidings.errors.Unavailable` within the socket timeouts (2 s to connect, 5 s per
call, unless the URL sets ``socket_connect_timeout``/``socket_timeout``). The reader
notices a lost connection at once when the server closes it, or by an unanswered PING
after ``health_interval`` seconds of silence otherwise; it then reconnects with
exponential backoff and equal jitter (``backoff_base``, 0.1 s, doubling up to
``backoff_cap``, 2 s; each wait is half that plus up to as much again), re-subscribes and
calls ``on_resync``: events published meanwhile were missed, and the hub refills its
channels from the store. Every publish meanwhile lands in the store but not on this node,
and a channel's history is bounded, so the reader does not sit out its backoff once Redis
is back: any call that reaches Redis (a publish, a ping, an append of its store)
wakes it to try at once (at most once per ``backoff_base``).

This module never sees client connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio.client import PubSub

from tidings.backends.base import (
    EventSink,
    MessageSink,
    NewEvent,
    ResyncSink,
    Store,
    StoreLimits,
    unavailable_store,
)
from tidings.backends.redis import (
    SOCKET_TIMEOUT,
    connect,
    parse_redis_url,
    server_identity,
    unavailable,
)
from tidings.backends.redis_store import RedisStore
from tidings.core.events import Event
from tidings.errors import Unavailable
from tidings.tasks import cancel_and_wait

__all__ = ["RedisBroker"]

log = logging.getLogger("tidings.backends.redis")


class RedisBroker:
    """Pub/sub between hub nodes; reconnects by itself (see the module docstring)."""

    def __init__(
        self,
        url: str,
        store: Store | None = None,
        *,
        backoff_base: float = 0.1,
        backoff_cap: float = 2.0,
        health_interval: float = 5.0,
    ) -> None:
        options = parse_redis_url(url)
        self.prefix = options.prefix
        self._client = connect(options.url)
        db = int(self._client.connection_pool.connection_kwargs.get("db") or 0)
        self.events_channel = f"{self.prefix}:{db}:events"
        self.control_channel = f"{self.prefix}:{db}:control"
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.health_interval = health_interval
        timeout = self._client.connection_pool.connection_kwargs.get("socket_timeout")
        self._timeout = float(timeout or SOCKET_TIMEOUT)
        self._on_event: EventSink | None = None
        self._on_control: MessageSink | None = None
        self._on_resync: ResyncSink | None = None
        self._reader: asyncio.Task[None] | None = None
        self.store: Store = store if store is not None else RedisStore(url, StoreLimits())
        #: Whether the store publishes what it appends (see the module docstring).
        self.atomic = (
            isinstance(self.store, RedisStore)
            and self.store.prefix == self.prefix
            and self.store.server == server_identity(self._client)
        )
        self._subscribed = False
        self._wake = asyncio.Event()
        self._closed = False
        #: How many times the reader re-subscribed after losing its connection.
        self.reconnects = 0

    @property
    def subscribed(self) -> bool:
        """Whether the reader is subscribed now (false while it reconnects)."""
        return self._subscribed

    # -- Broker ---------------------------------------------------------------------------

    async def start(
        self, on_event: EventSink, on_control: MessageSink, on_resync: ResyncSink | None = None
    ) -> None:
        """Subscribe, or raise :class:`Unavailable` if Redis cannot be reached now."""
        if self._reader is not None:
            return
        self._on_event, self._on_control, self._on_resync = on_event, on_control, on_resync
        with unavailable("broker"):
            pubsub = await self._subscribe()
        self._reader = asyncio.create_task(self._run(pubsub), name="tidings-redis-reader")

    async def publish(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        if not events:
            return []
        # Once the store has the events they must go out: a caller that goes away (client
        # disconnect, timeout) must not cancel the step in between.
        return await asyncio.shield(self._append_and_publish(events))

    async def _append_and_publish(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        store = self.store
        if self.atomic:
            assert isinstance(store, RedisStore)
            with unavailable_store():
                stored = await store.append(events, publish_to=self.events_channel)
            self._reachable()
            return stored
        with unavailable_store():
            stored = await store.append(events)
        fresh = [event for event, created in stored if created]
        if not fresh:
            return stored
        payload = orjson.dumps([event.to_dict() for event in fresh])
        try:
            with unavailable("broker"):
                await self._client.publish(self.events_channel, payload)
        except Unavailable:
            # Stored but not broadcast. This node's subscribers get it now (SPEC §7: local
            # delivery continues); other nodes fill the gap from the store when the broker
            # is back. The publisher is told, so it can retry with its idempotency key.
            on_event = self._on_event
            if on_event is not None:
                for event in fresh:
                    _call(on_event, event)
            raise Unavailable(
                "the broker cannot be reached; the event is stored and will reach "
                "other nodes when it recovers"
            ) from None
        self._reachable()
        return stored

    async def publish_control(self, message: dict[str, Any]) -> None:
        with unavailable("broker"):
            await self._client.publish(self.control_channel, orjson.dumps(message))
        self._reachable()

    async def ping(self) -> None:
        with unavailable("broker"):
            await self._client.ping()
        self._reachable()
        if self._reader is not None and not self._subscribed:
            raise Unavailable("the Redis broker is reconnecting")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._reader)
        await self._client.aclose()

    # -- the reader ---------------------------------------------------------------------------

    async def _subscribe(self) -> PubSub:
        """A pub/sub connection subscribed to both channels, confirmed by the server."""
        pubsub = self._client.pubsub()
        try:
            async with asyncio.timeout(2 * self._timeout):
                await pubsub.subscribe(self.events_channel, self.control_channel)
                confirmed = 0
                while confirmed < 2:
                    message = await pubsub.get_message(timeout=self._timeout)
                    if message is None:
                        raise TimeoutError("no subscription confirmation")
                    if message["type"] == "subscribe":
                        confirmed += 1
                    else:  # cannot happen (Redis confirms both at once), but lose nothing
                        self._dispatch(message)
        except BaseException:
            await _drop(pubsub)
            raise
        self._subscribed = True
        return pubsub

    def _backoff(self, attempt: int) -> float:
        """Equal jitter: half of ``min(cap, base * 2**attempt)``, plus up to as much again."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _reachable(self) -> None:
        """A call to Redis just succeeded: if the reader is waiting to reconnect, it
        should try now. Every event published meanwhile is one the hub must fetch from
        the store, and history is bounded: waiting out the backoff could outlast it."""
        if self._reader is not None and not self._subscribed:
            self._wake.set()

    async def _run(self, pubsub: PubSub) -> None:
        while True:
            try:
                await self._receive(pubsub)
            except Exception as exc:  # whatever broke, a new connection is the cure
                log.warning("redis broker lost its subscription: %s: %s", type(exc).__name__, exc)
            finally:
                self._subscribed = False
                await _drop(pubsub)
            pubsub = await self._resubscribe()
            self.reconnects += 1
            log.warning("redis broker subscribed again; the hub resyncs from the store")
            on_resync = self._on_resync
            if on_resync is not None:
                try:
                    on_resync()
                except Exception:
                    log.exception("on_resync failed")

    async def _resubscribe(self) -> PubSub:
        loop = asyncio.get_running_loop()
        attempt = 0
        tried = -self.backoff_base
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff(attempt)):
                    await self._wake.wait()  # woken early by a call that reached Redis
            # Woken or not, never try more often than every backoff_base seconds.
            await asyncio.sleep(max(0.0, tried + self.backoff_base - loop.time()))
            tried = loop.time()
            try:
                return await self._subscribe()
            except Exception as exc:
                attempt += 1
                # Say so now and then, not at every attempt of a long outage.
                level = logging.WARNING if attempt & (attempt - 1) == 0 else logging.DEBUG
                log.log(level, "redis broker reconnect attempt %d failed: %s", attempt, exc)

    async def _receive(self, pubsub: PubSub) -> None:
        """Hand messages over until the connection fails (then raise).

        After ``health_interval`` seconds without a message the reader sends PING; no
        answer within the socket timeout means a dead connection, even one whose server
        never closed it (frozen, or cut off by the network).
        """
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        while True:
            due = heard + self.health_interval if pinged is None else pinged + self._timeout
            message = await pubsub.get_message(timeout=max(0.01, due - loop.time()))
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                self._dispatch(message)
            elif pinged is None:
                if now >= due:
                    await pubsub.ping()
                    pinged = now
            elif now >= due:
                raise TimeoutError(f"no answer to PING within {self._timeout:g} s")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return  # pong, subscribe confirmations
        channel = message["channel"].decode()
        try:
            decoded = orjson.loads(message["data"])
            if channel == self.events_channel:
                events = [Event.from_dict(raw) for raw in decoded]
            elif channel == self.control_channel and isinstance(decoded, dict):
                if self._on_control is not None:
                    _call(self._on_control, decoded)
                return
            else:
                raise ValueError(f"unexpected message on {channel!r}")
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("redis broker dropped a malformed message: %s", exc)
            return
        if self._on_event is not None:
            for event in events:
                _call(self._on_event, event)


async def _drop(pubsub: Any) -> None:
    """Close a pub/sub connection, which may be broken already (``aclose`` is untyped)."""
    try:
        await pubsub.aclose()
    except Exception as exc:
        log.debug("closing a redis pub/sub connection failed: %s", exc)


def _call(sink: Any, item: Any) -> None:
    """Hand ``item`` to a hub callback; a failing callback must not stop the reader."""
    try:
        sink(item)
    except Exception:
        log.exception("a broker callback failed")
