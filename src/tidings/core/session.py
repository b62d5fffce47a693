"""Per-connection session state: subscriptions, resume, and the bounded outbox.

A :class:`Session` is what the hub talks to when it fans an event out. It knows which
channels its connection follows (with type filters and the position reached in each),
buffers live events while a subscription recovers from history so that nothing is lost
or doubled at the seam, and queues outgoing frames in a bounded :class:`Outbox` whose
overflow applies the slow-consumer policy. It renders frames through a :class:`Wire`
(SSE bytes or WebSocket text) and never performs I/O: the transport takes frames out
with :meth:`Session.take_frames` when the ``on_ready`` callback says there are some.

States and their only legal moves (:data:`TRANSITIONS`)::

    CONNECTING ──> OPEN ──> CLOSING ──> CLOSED
         └────────────┴──────────┴───────^
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tidings.core.cursor import encode_cursor
from tidings.core.events import EncodedEvent, Position
from tidings.core.history import HistoryPage
from tidings.errors import IllegalTransition

__all__ = [
    "TRANSITIONS",
    "Frame",
    "Outbox",
    "Session",
    "SlowConsumerPolicy",
    "State",
    "Subscription",
    "Wire",
]

Frame = str | bytes
SlowConsumerPolicy = Literal["disconnect", "drop"]


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.OPEN, State.CLOSING, State.CLOSED}),
    State.OPEN: frozenset({State.CLOSING, State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class Wire(Protocol):
    """How a transport's frames look. One implementation per wire format."""

    def event(self, encoded: EncodedEvent, session: Session) -> Frame: ...

    def subscribed(
        self, channel: str, recovered: bool, position: Position, rid: str | int | None
    ) -> Frame | None: ...

    def unsubscribed(self, channel: str, rid: str | int | None) -> Frame | None: ...

    def reset(self, channel: str, reason: str, position: Position) -> Frame: ...

    def disconnect(self, reason: str) -> Frame: ...

    def position(self, session: Session) -> Frame | None: ...


class Outbox:
    """A FIFO of frames bounded in count and bytes.

    Each entry remembers the channel of the event it carries (``None`` for control
    frames) so the ``drop`` policy can drop events and leave control frames alone.
    """

    __slots__ = ("_items", "_resets", "max_bytes", "max_frames", "nbytes")

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: deque[tuple[Frame, str | None]] = deque()
        # The ``reset`` frame queued by :meth:`push_reset` for each channel.
        self._resets: dict[str, Frame] = {}

    def __len__(self) -> int:
        return len(self._items)

    def fits(self, frame: Frame) -> bool:
        return len(self._items) < self.max_frames and self.nbytes + len(frame) <= self.max_bytes

    def push(self, frame: Frame, channel: str | None = None) -> None:
        self._items.append((frame, channel))
        self.nbytes += len(frame)

    def push_front(self, frame: Frame) -> None:
        self._items.appendleft((frame, None))
        self.nbytes += len(frame)

    def push_reset(self, channel: str, frame: Frame) -> None:
        """Queue ``frame``, a ``reset`` of ``channel``, first; it replaces one still queued.

        One reset per channel says everything, and a stuck client must not make every
        drop add another frame that is never dropped.
        """
        old = self._resets.pop(channel, None)
        if old is not None:
            for index, (queued, _) in enumerate(self._items):
                if queued is old:
                    del self._items[index]
                    self.nbytes -= len(old)
                    break
        self._resets[channel] = frame
        self.push_front(frame)

    def take(self) -> list[Frame]:
        frames = [frame for frame, _ in self._items]
        self._items.clear()
        self._resets.clear()
        self.nbytes = 0
        return frames

    def clear(self) -> None:
        self._items.clear()
        self._resets.clear()
        self.nbytes = 0

    def drop_oldest_events(self, frames_goal: int, bytes_goal: int) -> dict[str, int]:
        """Drop the oldest event frames until within both goals; count drops per channel."""
        kept: deque[tuple[Frame, str | None]] = deque()
        dropped: dict[str, int] = {}
        items = self._items
        while items and (len(items) + len(kept) > frames_goal or self.nbytes > bytes_goal):
            frame, channel = items.popleft()
            if channel is None:
                kept.append((frame, channel))
                continue
            self.nbytes -= len(frame)
            dropped[channel] = dropped.get(channel, 0) + 1
        kept.extend(items)
        self._items = kept
        return dropped


@dataclass(slots=True)
class Subscription:
    """One channel a session follows."""

    channel: str
    types: frozenset[str] | None
    since: str | None
    request_id: str | int | None
    position: Position | None = None
    recovering: bool = True
    buffer: list[EncodedEvent] = field(default_factory=list)
    buffer_overflowed: bool = False

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


class Session:
    """The Sans-I/O state of one connection. See the module docstring."""

    def __init__(
        self,
        wire: Wire,
        *,
        max_frames: int = 1000,
        max_bytes: int = 4 * 1024 * 1024,
        slow_consumer: SlowConsumerPolicy = "disconnect",
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.wire = wire
        self.state = State.CONNECTING
        #: CONNECTING or OPEN: frames may still be queued (a plain attribute, for speed).
        self.alive = True
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox = Outbox(max_frames, max_bytes)
        self.slow_consumer: SlowConsumerPolicy = slow_consumer
        self.close_reason: str | None = None
        #: Channels a stream will carry, declared before they are subscribed one by one,
        #: so that its cursor has the multi-channel form from the first frame.
        self.declared_width = 0
        #: Events dropped by the ``drop`` policy, for metrics.
        self.dropped = 0
        #: Frames queued for delivery of events, for metrics.
        self.delivered = 0
        self._on_ready = on_ready

    # -- state ---------------------------------------------------------------------

    def _move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"session cannot go from {self.state.value} to {new.value}")
        self.state = new
        self.alive = new is State.CONNECTING or new is State.OPEN

    def open(self) -> None:
        """The transport accepted the connection."""
        self._move(State.OPEN)

    def close(self, reason: str, *, discard: bool = False) -> None:
        """Ask for the connection to end with ``reason``; the state becomes CLOSING.

        What is already queued goes out first, then the disconnect frame: an event
        published to the client just before a graceful disconnect still reaches it (the
        transport's close deadline bounds how long that may take). With ``discard`` (a
        slow consumer, whose queue is the problem) the queue is dropped and the client
        resumes from history. The transport sends what is queued, then closes and calls
        :meth:`closed`.
        """
        if not self.alive:
            return
        self._move(State.CLOSING)
        self.close_reason = reason
        if discard:
            self.outbox.clear()
        self.outbox.push(self.wire.disconnect(reason))
        self._on_ready()

    def closed(self) -> None:
        """The transport is gone. Idempotent."""
        if self.state is not State.CLOSED:
            self._move(State.CLOSED)
        self.outbox.clear()
        self.subscriptions.clear()

    # -- subscriptions ---------------------------------------------------------------

    def begin_subscribe(
        self,
        channel: str,
        *,
        types: frozenset[str] | None = None,
        since: str | None = None,
        request_id: str | int | None = None,
    ) -> Subscription:
        """Start following ``channel``; live events are buffered until :meth:`finish_subscribe`.

        A second subscribe to the same channel replaces the first (new filter, new
        resume point).
        """
        subscription = Subscription(channel, types, since, request_id)
        self.subscriptions[channel] = subscription
        return subscription

    def finish_subscribe(self, channel: str, page: HistoryPage) -> None:
        """Complete a subscription with what the store answered.

        Emits, in order: the ``subscribed`` frame, the missed events (or ``reset`` when
        history no longer reaches back to ``since``), then the live events buffered
        meanwhile that come after them. Nothing is lost at the seam and nothing doubled.
        """
        subscription = self.subscriptions.get(channel)
        if subscription is None or not subscription.recovering or not self.alive:
            return
        since = subscription.since
        recovered = since is not None and page.complete
        frame = self.wire.subscribed(channel, recovered, page.position, subscription.request_id)
        if frame is not None:
            self._push(frame, None)
        if since is not None and not page.complete:
            subscription.position = page.position
            self._push(self.wire.reset(channel, "history_gap", page.position), None)
        else:
            start = Position.parse(since) if since else None
            subscription.position = start if start is not None else page.position
            subscription.recovering = False
            for event in page.events:
                self._deliver_to(subscription, EncodedEvent(event))
            if subscription.position is None:  # pragma: no cover - parse checked by store
                subscription.position = page.position
        subscription.recovering = False
        buffered, subscription.buffer = subscription.buffer, []
        if subscription.buffer_overflowed:
            subscription.buffer_overflowed = False
            last = buffered[-1].event.position if buffered else page.position
            subscription.position = last
            self._push(self.wire.reset(channel, "dropped", last), None)
            return
        for encoded in buffered:
            self._deliver_to(subscription, encoded)

    def unsubscribe(self, channel: str, request_id: str | int | None = None) -> bool:
        """Stop following ``channel``; False when it was not followed."""
        subscription = self.subscriptions.pop(channel, None)
        if subscription is None:
            return False
        frame = self.wire.unsubscribed(channel, request_id)
        if frame is not None:
            self._push(frame, None)
        return True

    def positions(self) -> dict[str, Position]:
        """Where each settled subscription stands."""
        return {
            channel: sub.position
            for channel, sub in self.subscriptions.items()
            if sub.position is not None
        }

    def cursor(self) -> str:
        """The resume cursor of the whole session (see :mod:`tidings.core.cursor`)."""
        return encode_cursor(self.positions(), channels=self.width)

    @property
    def width(self) -> int:
        """How many channels the stream carries: those followed, or more if declared."""
        return max(len(self.subscriptions), self.declared_width)

    def mark_position(self) -> None:
        """Queue the wire's position marker (SSE: an ``id:``-only frame) if it has one."""
        frame = self.wire.position(self)
        if frame is not None:
            self._push(frame, None)

    # -- delivery (the hot path) ---------------------------------------------------------

    def deliver(self, encoded: EncodedEvent) -> None:
        """Hand the session one live event of a channel it may follow."""
        subscription = self.subscriptions.get(encoded.event.channel)
        if subscription is None or self.state is not State.OPEN:
            return
        if subscription.recovering:
            buffer = subscription.buffer
            if len(buffer) >= self.outbox.max_frames:
                if self.slow_consumer == "disconnect":
                    self.close("slow_consumer", discard=True)
                    return
                del buffer[0]
                subscription.buffer_overflowed = True
            buffer.append(encoded)
            return
        self._deliver_to(subscription, encoded)

    def _deliver_to(self, subscription: Subscription, encoded: EncodedEvent) -> None:
        position = encoded.event.position
        current = subscription.position
        if current is not None:
            if position.epoch != current.epoch:
                # The channel's history was lost and started again: say so, then go on.
                self._push(self.wire.reset(subscription.channel, "history_gap", position), None)
            elif position.offset <= current.offset:
                return  # already delivered: the recovery seam or a broker redelivery
            elif position.offset > current.offset + 1:
                # Events were lost before reaching this node and the store could not fill
                # the hole: tell the client instead of leaving it with a silent gap.
                self._push(self.wire.reset(subscription.channel, "history_gap", position), None)
        subscription.position = position
        if not subscription.wants(encoded.event.type):
            return
        self.delivered += 1
        self._push(self.wire.event(encoded, self), subscription.channel)

    def push_control(self, frame: Frame) -> None:
        """Queue a control frame (pong, error, result, …)."""
        if self.alive:
            self._push(frame, None)

    def _push(self, frame: Frame, channel: str | None) -> None:
        if not self.alive:
            # Closing: the disconnect frame goes out alone. Anything after it (a history
            # replay that hit the bound, an SSE cursor) would skip the discarded events.
            return
        outbox = self.outbox
        if not outbox.fits(frame):
            if channel is None:
                # Control frames answer the client (pong, error, reset): let them exceed
                # the bound a little, but a client that floods requests and never reads
                # is a slow consumer too.
                if len(outbox) > 2 * outbox.max_frames or outbox.nbytes > 2 * outbox.max_bytes:
                    self.close("slow_consumer", discard=True)
                    return
            elif self.slow_consumer == "disconnect":
                self.close("slow_consumer", discard=True)
                return
            else:
                self._drop_for(frame)
        outbox.push(frame, channel)
        if len(outbox) == 1:
            self._on_ready()

    def _drop_for(self, frame: Frame) -> None:
        outbox = self.outbox
        # Drop down to three quarters so a stuck client does not make every push drop.
        dropped = outbox.drop_oldest_events(
            max(0, outbox.max_frames * 3 // 4 - 1),
            max(0, outbox.max_bytes * 3 // 4 - len(frame)),
        )
        for channel, count in dropped.items():
            self.dropped += count
            subscription = self.subscriptions.get(channel)
            position = subscription.position if subscription else None
            if position is not None:
                outbox.push_reset(channel, self.wire.reset(channel, "dropped", position))

    def take_frames(self) -> list[Frame]:
        """Everything queued, oldest first; the outbox is empty afterwards."""
        return self.outbox.take()
