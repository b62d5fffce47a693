"""In-process backends: the default, for one hub process with nothing else installed.

Nothing here survives a restart. The memory store draws one fresh epoch when it is
created, so ids handed out before a restart are recognised as unknown (and answered with
``reset``) rather than confused with new ones. Reading a channel that has no events
allocates nothing, so readers cannot grow the store.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.backends.base import (
    EventSink,
    MessageSink,
    NewEvent,
    PresenceEntry,
    ResyncSink,
    Store,
    StoreLimits,
    unavailable_store,
)
from tidings.core.events import Event, Position, new_epoch
from tidings.core.history import ChannelHistory, HistoryPage

__all__ = ["MemoryBroker", "MemoryPresence", "MemoryStore"]


@dataclass(slots=True)
class _ChannelHistory:
    offset: int = 0
    # (stored at, event) pairs, oldest first.
    events: deque[tuple[float, Event]] = field(default_factory=deque)


class MemoryStore:
    """A ring buffer of events per channel, bounded by size and optionally by age."""

    def __init__(
        self, limits: StoreLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or StoreLimits()
        self._clock = clock
        self.epoch = new_epoch()
        self._channels: dict[str, _ChannelHistory] = {}
        self._idempotency: OrderedDict[str, tuple[float, Event]] = OrderedDict()

    def _history(self, channel: str) -> _ChannelHistory:
        history = self._channels.get(channel)
        if history is None:
            history = self._channels[channel] = _ChannelHistory()
        return history

    def _expire(self, history: _ChannelHistory, now: float) -> None:
        ttl = self.limits.history_ttl
        if ttl is None:
            return
        events = history.events
        while events and now - events[0][0] > ttl:
            events.popleft()

    def _forget_keys(self, now: float) -> None:
        keys = self._idempotency
        ttl = self.limits.idempotency_ttl
        while keys:
            stored_at, _ = next(iter(keys.values()))
            if now - stored_at <= ttl:
                break
            keys.popitem(last=False)

    async def append(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        return self.append_now(events)

    def append_now(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        """:meth:`append` without awaiting: the memory store never blocks."""
        now = self._clock()
        self._forget_keys(now)
        stored: list[tuple[Event, bool]] = []
        size = self.limits.history_size
        for new in events:
            # Keys are scoped to their channel: the same key on two channels is two events.
            key = f"{new.channel}\n{new.idempotency_key}" if new.idempotency_key else None
            if key is not None:
                seen = self._idempotency.get(key)
                if seen is not None:
                    stored.append((seen[1], False))
                    continue
            history = self._history(new.channel)
            history.offset += 1
            event = Event(
                new.channel, new.type, new.data, new.timestamp, Position(self.epoch, history.offset)
            )
            history.events.append((now, event))
            while len(history.events) > size:
                history.events.popleft()
            if key is not None:
                self._idempotency[key] = (now, event)
            stored.append((event, True))
        return stored

    async def read(
        self, channel: str, *, since: str | None = None, limit: int = 100
    ) -> HistoryPage:
        history = self._channels.get(channel) or _ChannelHistory()
        self._expire(history, self._clock())
        top = Position(self.epoch, history.offset)
        retained = [event for _, event in history.events]
        if since is None:
            return HistoryPage(retained[-limit:] if limit > 0 else [], True, top)
        position = Position.parse(since)
        if position is None or position.epoch != self.epoch or position.offset > history.offset:
            return HistoryPage(retained[:limit] if limit > 0 else [], False, top)
        oldest = retained[0].position.offset if retained else history.offset + 1
        complete = position.offset >= oldest - 1
        after = [event for event in retained if event.position.offset > position.offset]
        return HistoryPage(after[:limit] if limit > 0 else [], complete, top)

    async def channels(self, *, limit: int = 1000) -> list[ChannelHistory]:
        now = self._clock()
        found = []
        for name, history in self._channels.items():
            self._expire(history, now)
            if history.events:
                newest = history.events[-1][1]
                found.append(ChannelHistory(name, len(history.events), newest.timestamp))
        found.sort(key=lambda c: c.last_event_at, reverse=True)
        return found[:limit]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryBroker:
    """Stores in its store and hands every event straight to this process's hub: a
    broker of one node.

    Over a :class:`MemoryStore` a publish is plain function calls, with nothing to wait
    for and so nothing to cancel halfway (the hub's fast path). Over another store (SQLite)
    the append and the hand-over run shielded from the caller's cancellation.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        # The memory store itself, not a subclass, which may await.
        self._append_now = self.store.append_now if type(self.store) is MemoryStore else None
        self._on_event: EventSink | None = None
        self._on_control: MessageSink | None = None

    async def start(
        self, on_event: EventSink, on_control: MessageSink, on_resync: ResyncSink | None = None
    ) -> None:
        self._on_event = on_event
        self._on_control = on_control

    async def publish(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        append_now = self._append_now
        if append_now is not None:
            # No await from here to the return: a cancelled caller cannot split it.
            with unavailable_store():
                stored = append_now(events)
            self._hand_on(stored)
            return stored
        return await asyncio.shield(self._append_and_hand_on(events))

    async def _append_and_hand_on(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        with unavailable_store():
            stored = await self.store.append(events)
        self._hand_on(stored)
        return stored

    def _hand_on(self, stored: list[tuple[Event, bool]]) -> None:
        on_event = self._on_event
        if on_event is None:
            return
        for event, created in stored:
            if created:
                on_event(event)

    async def publish_control(self, message: dict[str, Any]) -> None:
        if self._on_control is not None:
            self._on_control(message)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._on_event = None
        self._on_control = None


class MemoryPresence:
    """Presence for nodes in one process (and for tests): entries with their expiry."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, dict[str, tuple[float, PresenceEntry]]] = {}
        self._listings: dict[str, tuple[float, list[Any]]] = {}

    async def update(self, node: str, entries: dict[str, PresenceEntry], ttl: float) -> None:
        expires = self._clock() + ttl
        for channel, entry in entries.items():
            nodes = self._entries.setdefault(channel, {})
            if entry.connections > 0:
                nodes[node] = (expires, entry)
            else:
                nodes.pop(node, None)
                if not nodes:
                    del self._entries[channel]

    async def get(self, channel: str) -> PresenceEntry:
        now = self._clock()
        nodes = self._entries.get(channel, {})
        live = [entry for expires, entry in nodes.values() if expires > now]
        clients = sorted({client for entry in live for client in entry.clients})
        return PresenceEntry(sum(entry.connections for entry in live), tuple(clients))

    async def update_listing(self, node: str, rows: Sequence[Any], ttl: float) -> None:
        if rows:
            self._listings[node] = (self._clock() + ttl, list(rows))
        else:
            self._listings.pop(node, None)

    async def listings(self) -> dict[str, list[Any]]:
        now = self._clock()
        return {node: rows for node, (expires, rows) in self._listings.items() if expires > now}

    async def close(self) -> None:
        self._entries.clear()
        self._listings.clear()
