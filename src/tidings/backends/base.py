"""The backend interfaces and their contracts.

They are used only by the hub's node (:mod:`tidings.node`). Backends never see connections or
sockets: fan-out to local subscribers is the hub's job, written once above them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from tidings.core.events import Event
from tidings.core.history import ChannelHistory, HistoryPage
from tidings.core.scheduled import Scheduled
from tidings.errors import BackendError, LimitExceeded, TidingsError, Unavailable

__all__ = [
    "Broker",
    "EventSink",
    "MessageSink",
    "NewEvent",
    "Presence",
    "PresenceEntry",
    "Records",
    "ResyncSink",
    "Schedules",
    "Store",
    "StoreLimits",
    "backend_failure",
    "records_full",
    "schedules_full",
    "unavailable_store",
]

log = logging.getLogger("tidings.backends")


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
    * :meth:`channels` lists channels that have retained events (what :meth:`read`
      would return), newest event first, at most ``limit``: their number of events and
      the timestamp of the newest. Channels whose history is all gone are not listed.
    * :meth:`ping` raises when the store cannot be reached; :meth:`close` is idempotent.
    """

    async def append(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]: ...

    async def read(
        self, channel: str, *, since: str | None = None, limit: int = 100
    ) -> HistoryPage: ...

    async def channels(self, *, limit: int = 1000) -> list[ChannelHistory]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Schedules(Protocol):
    """Events waiting for their time, kept where the store keeps history (so they are as
    durable as it is, and shared by the nodes that share it).

    Contract (checked by ``tests/contract``):

    * :meth:`put` keeps ``entry`` under its key, replacing the pending entry with that
      key (which it returns; else ``None``). When ``limit`` entries are pending and the
      key is new, it raises :class:`~tidings.errors.LimitExceeded` and keeps nothing.
    * :meth:`get` returns the pending entry of a key; :meth:`cancel` removes and returns
      it (``None`` when there is none).
    * :meth:`pending` lists pending entries (of ``channel``, if given) by due time, then
      key, at most ``limit``; entries being fired are still pending until :meth:`done`.
    * :meth:`claim` returns the entries due at ``now`` that nobody holds, earliest
      first, at most ``limit``, and holds them for ``lease`` seconds: until then no
      other claim (on any node) returns them. An entry not :meth:`done` by then is due
      again: a node that died while firing loses nothing.
    * :meth:`done` removes a fired entry, unless its key was scheduled again meanwhile
      (another ``version``), which stays.
    * :meth:`next_due` is the earliest time a claim could return something, or ``None``.
    * :meth:`count` is the number of pending entries; :meth:`close` is idempotent.
    """

    async def put(self, entry: Scheduled, *, limit: int) -> Scheduled | None: ...

    async def get(self, key: str) -> Scheduled | None: ...

    async def cancel(self, key: str) -> Scheduled | None: ...

    async def pending(
        self, *, channel: str | None = None, limit: int = 1000
    ) -> list[Scheduled]: ...

    async def claim(self, now: float, *, lease: float, limit: int) -> list[Scheduled]: ...

    async def done(self, entry: Scheduled) -> None: ...

    async def next_due(self) -> float | None: ...

    async def count(self) -> int: ...

    async def close(self) -> None: ...


@runtime_checkable
class Records(Protocol):
    """Small records in namespaces, each optionally *ready* at a time and then claimable
    under a lease: what the webhook outbox and its endpoints are kept in, beside the
    store's history (so as durable, and as shared between nodes, as it is).

    Contract (checked by ``tests/contract``):

    * :meth:`put` keeps ``record`` under ``(namespace, key)``, replacing it, with
      ``ready`` (a time, or ``None``: never claimable). With ``if_absent`` an existing
      record is left as it is and ``False`` returned. With ``limit``, a new key in a
      namespace that already holds ``limit`` ready records is refused with
      :class:`~tidings.errors.LimitExceeded`.
    * :meth:`get` returns a record; :meth:`delete` removes one (``True`` if it was
      there); :meth:`drop` removes a whole namespace.
    * :meth:`newest` returns a namespace's records by key, greatest first, at most
      ``limit``.
    * :meth:`claim` returns the records of a namespace whose ready time has come,
      earliest first, at most ``limit``, and moves their ready time to ``now + lease``:
      no other claim, on any node, returns them until then.
    * :meth:`ready_count` is the number of records with a ready time in a namespace.
    * :meth:`close` is idempotent.
    """

    async def put(
        self,
        namespace: str,
        key: str,
        record: bytes,
        *,
        ready: float | None,
        if_absent: bool = False,
        limit: int | None = None,
    ) -> bool: ...

    async def get(self, namespace: str, key: str) -> bytes | None: ...

    async def delete(self, namespace: str, key: str) -> bool: ...

    async def drop(self, namespace: str) -> None: ...

    async def newest(self, namespace: str, *, limit: int = 1000) -> list[bytes]: ...

    async def claim(
        self, namespace: str, now: float, *, lease: float, limit: int
    ) -> list[bytes]: ...

    async def ready_count(self, namespace: str) -> int: ...

    async def close(self) -> None: ...


def records_full(limit: int) -> LimitExceeded:
    """The refusal of :meth:`Records.put` when a namespace holds ``limit`` ready records."""
    return LimitExceeded(f"{limit} records are already waiting", code="queue_full")


def schedules_full(limit: int) -> LimitExceeded:
    """The refusal of :meth:`Schedules.put` when ``limit`` entries are pending."""
    return LimitExceeded(
        f"{limit} events are already scheduled (the max_scheduled setting)",
        code="too_many_scheduled",
    )


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
    * :meth:`update_listing` replaces this ``node``'s listing (JSON objects the backend
      does not look into: the hub's connection summaries); an empty one removes it.
      A listing lives for ``ttl`` seconds unless updated again.
    * :meth:`listings` returns the live listings of every node, by node.
    * :meth:`close` is idempotent.
    """

    async def update(self, node: str, entries: dict[str, PresenceEntry], ttl: float) -> None: ...

    async def get(self, channel: str) -> PresenceEntry: ...

    async def update_listing(self, node: str, rows: Sequence[Any], ttl: float) -> None: ...

    async def listings(self) -> dict[str, list[Any]]: ...

    async def close(self) -> None: ...


@runtime_checkable
class Broker(Protocol):
    """Stores events in its :class:`Store` and moves them, and control messages, to every
    hub node, this one included. As centrifuge's broker owns history, a broker owns
    "append, then publish": the two are one step, so nothing else has to know how a
    backend keeps a channel's order across nodes.

    Contract (checked by ``tests/contract``):

    * :attr:`store` is the store the broker appends to; the hub reads history from it.
    * :meth:`publish` appends the events to :attr:`store` (in the order given, with the
      store's idempotency rules) and returns them as the store does. After :meth:`start`,
      every event it stored now is handed to ``on_event`` on every started node, once;
      an idempotent replay is not handed on again. The events one node publishes arrive
      in position order per channel. Publishers on several nodes appending to one channel
      at once may arrive interleaved, unless the broker publishes in the store's own
      atomic step (Redis over Redis); the hub's sequencer puts them back in order.
    * Once the store has an event, it is handed on even if the caller of :meth:`publish`
      is cancelled: a publish is never half done.
    * When the store cannot be reached, :meth:`publish` raises
      :class:`~tidings.errors.Unavailable` and nothing is handed on. When the events are
      stored but other nodes cannot be reached, they are handed to this node's
      ``on_event`` (local delivery continues) and :meth:`publish` raises
      :class:`~tidings.errors.Unavailable`: the other nodes fill the gap from the store
      when the broker is back.
    * Every message passed to :meth:`publish_control` is handed to ``on_control`` on
      every started node (this one included). Messages are small JSON objects.
    * A broker that loses its connection reconnects by itself, with backoff, and calls
      ``on_resync`` once it receives again: events published meanwhile may have been
      missed, and the hub fills the gaps from the store.
    * :meth:`ping` raises when the broker cannot be reached; :meth:`close` is idempotent
      and leaves the store open (the hub closes it).
    """

    store: Store

    async def start(
        self, on_event: EventSink, on_control: MessageSink, on_resync: ResyncSink | None = None
    ) -> None: ...

    async def publish(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]: ...

    async def publish_control(self, message: dict[str, Any]) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@contextlib.contextmanager
def backend_failure(action: str, message: str) -> Iterator[None]:
    """Turn a backend's failure during ``action`` into :class:`~tidings.errors.Unavailable`
    (503) with ``message``, which is written for clients.

    What is logged is the exception's type, or a :class:`~tidings.errors.BackendError`'s
    own message (written for operators); never a raw backend message, which can carry
    URLs with passwords.
    """
    try:
        yield
    except BackendError as exc:
        log.warning("%s failed: %s", action, exc.message)
        raise Unavailable(message) from None
    except TidingsError:
        raise
    except Exception as exc:
        log.warning("%s failed: %s", action, type(exc).__name__)
        raise Unavailable(message) from None


def unavailable_store() -> contextlib.AbstractContextManager[None]:
    """:func:`backend_failure` for a store's append: nothing was published."""
    return backend_failure("store append", "the store cannot be reached; nothing was published")
