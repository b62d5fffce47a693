"""The two backend interfaces and their contracts.

Both are used only by :class:`~tidings.hub.Hub`. Backends never see connections or
sockets: fan-out to local subscribers is the hub's job, written once above them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from tidings.core.events import Event
from tidings.core.history import HistoryPage

__all__ = [
    "Broker",
    "EventSink",
    "MessageSink",
    "NewEvent",
    "Presence",
    "PresenceEntry",
    "ResyncSink",
    "Store",
    "StoreLimits",
]


class NewEvent(NamedTuple):
    """An event as published, before the store gives it a position (a named tuple:
    immutable, and cheap to make once per published event)."""

    channel: str
    type: str
    data: Any
    timestamp: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Bounds every store enforces."""

    #: Events kept per channel.
    history_size: int = 100
    #: Seconds an event stays in history; ``None`` keeps events until evicted by size.
    history_ttl: float | None = None
    #: Seconds an idempotency key maps to the event it first stored.
    idempotency_ttl: float = 300.0


@runtime_checkable
class Store(Protocol):
    """Keeps each channel's recent history and assigns event positions.

    Contract (checked by ``tests/contract``):

    * :meth:`append` stores events in the order given and returns them with positions,
      each paired with ``True`` when it was stored now (``False``: an idempotent replay).
      Positions in a channel share an epoch and their offsets grow by exactly one per
      event, with no reuse, even when several hub nodes append concurrently.
    * An event whose ``idempotency_key`` was stored for the same channel within
      ``idempotency_ttl`` is not stored again: the first stored event is returned in its
      place. Keys are scoped per channel.
    * A channel keeps at most ``history_size`` events and, with ``history_ttl``, none
      older than that.
    * :meth:`read` with ``since`` returns the events after that position, oldest first,
      at most ``limit``; ``complete`` is false when the history no longer reaches back
      to ``since`` (evicted, expired, unknown, other epoch). Without ``since`` it
      returns the newest ``limit`` events and ``complete`` is true.
    * :meth:`ping` raises when the store cannot be reached; :meth:`close` is idempotent.
    """

    async def append(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]: ...

    async def read(
        self, channel: str, *, since: str | None = None, limit: int = 100
    ) -> HistoryPage: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


EventSink = Callable[[Event], None]
MessageSink = Callable[[dict[str, Any]], None]
ResyncSink = Callable[[], None]


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One node's view of a channel: how many connections, and which client ids."""

    connections: int
    clients: tuple[str, ...] = ()


@runtime_checkable
class Presence(Protocol):
    """Who is subscribed to a channel across every node.

    Contract (checked by ``tests/contract``):

    * :meth:`update` replaces this ``node``'s entries for the channels given (an entry
      with zero connections removes the node from that channel); entries live for
      ``ttl`` seconds unless updated again, so a node that dies drops out by itself.
    * :meth:`get` sums the live entries of every node for ``channel``: total
      connections, and the distinct client ids, sorted.
    * :meth:`close` is idempotent.
    """

    async def update(self, node: str, entries: dict[str, PresenceEntry], ttl: float) -> None: ...

    async def get(self, channel: str) -> PresenceEntry: ...

    async def close(self) -> None: ...


@runtime_checkable
class Broker(Protocol):
    """Moves stored events and control messages to every hub node, this one included.

    Contract (checked by ``tests/contract``):

    * After :meth:`start`, every event passed to :meth:`publish` on any node is handed
      to ``on_event`` on every started node, in the order published per channel.
    * Every message passed to :meth:`publish_control` is handed to ``on_control`` on
      every started node (this one included). Messages are small JSON objects.
    * :meth:`publish` raises :class:`~tidings.errors.Unavailable` rather than losing an
      event silently when the broker cannot be reached.
    * A broker that loses its connection reconnects by itself, with backoff, and calls
      ``on_resync`` once it receives again: events published meanwhile may have been
      missed, and the hub fills the gaps from the store.
    * :meth:`ping` raises when the broker cannot be reached; :meth:`close` is idempotent.
    """

    async def start(
        self, on_event: EventSink, on_control: MessageSink, on_resync: ResyncSink | None = None
    ) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def publish_control(self, message: dict[str, Any]) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
