"""Local fan-out: which connections of this node follow which channel, and delivery.

Every event the broker brings goes through a :class:`~tidings.core.sequencer.Sequencer`
first, so each local subscriber gets a channel's events once and in order whatever the
broker did. A gap (an event arrived early, or some were lost while the broker was
reconnecting) is given a short grace to close by itself, then filled from the store;
after a broker reconnect every followed channel is filled at once. Each event is
encoded once for all of its subscribers, and sessions only queue frames: nothing here
ever waits for a socket.

A channel with many subscribers is served in slices of :attr:`FanOut.slice_size`
connections, one slice per turn of the event loop, so that publishers, handshakes and
pings are answered between slices instead of after the whole fan-out. Events waiting
behind a slice for the same subscribers join one job and reach each connection
together, which its transport writes at once.

The loop is reached only through a :class:`Scheduler` (the running loop by default), so
the slicing, the merging of jobs and the filling of gaps run in unit tests with plain
values and a hand-turned scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tidings.backends.base import Store
from tidings.core.events import EncodedEvent, Event, Position
from tidings.core.sequencer import Sequencer
from tidings.tasks import cancel_and_wait

if TYPE_CHECKING:
    from tidings.connection import Connection

__all__ = ["FanOut", "LoopScheduler", "Scheduler"]

log = logging.getLogger("tidings.fanout")


class Cancellable(Protocol):
    def cancel(self) -> Any: ...

    def add_done_callback(self, callback: Callable[[Any], object], /) -> None: ...


class Scheduler(Protocol):
    """What the fan-out needs of an event loop."""

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on a later turn (after what is already waiting)."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> Cancellable:
        """Run ``coroutine`` as a task."""

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds."""


class LoopScheduler:
    """The running asyncio loop, found when first needed."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._get().call_soon(callback)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> Cancellable:
        return self._get().create_task(coroutine)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


@dataclass(slots=True)
class _Job:
    """Events of one channel on their way to the subscribers it had when they came."""

    channel: str
    events: list[EncodedEvent]
    targets: tuple[Connection, ...]
    version: int
    next: int = 0


class FanOut:
    """The local channel registry and ordered delivery to its connections."""

    #: Connections served per turn of the event loop.
    slice_size = 64

    def __init__(
        self,
        store: Store,
        *,
        history_size: int,
        gap_grace: float = 0.2,
        on_change: Callable[[str], None] = lambda channel: None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.store = store
        self.scheduler: Scheduler = scheduler or LoopScheduler()
        self.history_size = history_size
        self.gap_grace = gap_grace
        self.subscribers: dict[str, set[Connection]] = {}
        self.sequencer = Sequencer()
        self._on_change = on_change
        self._filling: dict[str, Cancellable] = {}
        # Bumped whenever a channel's subscribers change: a waiting job may only take
        # more events while it would deliver them to exactly the current subscribers.
        self._versions: dict[str, int] = {}
        self._jobs: deque[_Job] = deque()
        self._scheduled = False
        # Called once every event received so far has reached its sessions.
        self._when_idle: list[Callable[[], None]] = []
        #: Gaps the store could not fill (sessions answered them with ``reset``).
        self.unfilled_gaps = 0

    # -- registry ---------------------------------------------------------------------

    def add(self, channel: str, connection: Connection) -> None:
        subscribers = self.subscribers.setdefault(channel, set())
        if not subscribers:
            self.sequencer.expect(channel)
        if connection not in subscribers:
            subscribers.add(connection)
            self._versions[channel] = self._versions.get(channel, 0) + 1
            self._on_change(channel)

    def discard(self, channel: str, connection: Connection) -> None:
        subscribers = self.subscribers.get(channel)
        if subscribers is None or connection not in subscribers:
            return
        subscribers.discard(connection)
        self._versions[channel] = self._versions.get(channel, 0) + 1
        if not subscribers:
            del self.subscribers[channel]
            del self._versions[channel]
            self.sequencer.forget(channel)
            task = self._filling.pop(channel, None)
            if task is not None:
                task.cancel()
        self._on_change(channel)

    def started(self, channel: str, position: Position) -> None:
        """A subscribe read ``channel``'s position from the store: events after it flow."""
        if channel not in self.subscribers:
            return
        ready, gap = self.sequencer.start(channel, position)
        for item in ready:
            self._deliver(item)
        if gap:
            self._fill_later(channel, self.gap_grace)

    # -- delivery ---------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """The broker's event sink."""
        if event.channel not in self.subscribers:
            return
        ready, gap = self.sequencer.feed(event)
        for item in ready:
            self._deliver(item)
        if gap:
            self._fill_later(event.channel, self.gap_grace)

    def _deliver(self, event: Event) -> None:
        channel = event.channel
        subscribers = self.subscribers.get(channel)
        if not subscribers:
            return
        encoded = EncodedEvent(event)
        jobs = self._jobs
        if not jobs and len(subscribers) <= self.slice_size:
            for connection in subscribers:
                connection.session.deliver(encoded)
            return
        # Behind other jobs (order per channel) or too many for one turn: queue it.
        version = self._versions.get(channel, 0)
        last = jobs[-1] if jobs else None
        if (
            last is not None
            and last.channel == channel
            and last.next == 0
            and last.version == version
        ):
            last.events.append(encoded)
        else:
            jobs.append(_Job(channel, [encoded], tuple(subscribers), version))
        if not self._scheduled:
            self._scheduled = True
            self.scheduler.call_soon(self._run_jobs)

    def _run_jobs(self) -> None:
        """Serve one slice of the queued jobs, then give the loop back."""
        self._scheduled = False
        jobs = self._jobs
        budget = self.slice_size
        while jobs and budget > 0:
            job = jobs[0]
            targets = job.targets
            events = job.events
            start = job.next
            end = min(len(targets), start + max(1, budget // len(events)))
            for index in range(start, end):
                deliver = targets[index].session.deliver
                for encoded in events:
                    deliver(encoded)
            budget -= (end - start) * len(events)
            job.next = end
            if end == len(targets):
                jobs.popleft()
        if jobs:
            self._scheduled = True
            self.scheduler.call_soon(self._run_jobs)
        elif self._when_idle:
            waiting, self._when_idle = self._when_idle, []
            for callback in waiting:
                callback()

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every event received so far has reached its sessions
        (now, when no slice is waiting): a disconnect then comes after them."""
        if self._jobs:
            self._when_idle.append(callback)
        else:
            callback()

    def resync(self) -> None:
        """The broker reconnected: fill every followed channel from the store now."""
        for channel in self.sequencer.channels():
            self._fill_later(channel, 0.0)

    def _fill_later(self, channel: str, delay: float) -> None:
        if channel in self._filling:
            return
        task = self.scheduler.spawn(self._fill(channel, delay))
        self._filling[channel] = task
        task.add_done_callback(lambda _: self._filling.pop(channel, None))

    async def _fill(self, channel: str, delay: float) -> None:
        if delay:
            # A reordered event usually closes the gap by itself meanwhile; then there
            # is nothing to read.
            await self.scheduler.sleep(delay)
            if not self.sequencer.holding(channel):
                return
        last = self.sequencer.last(channel)
        if last is None:
            return
        try:
            page = await self.store.read(channel, since=str(last), limit=self.history_size)
        except Exception as exc:
            log.warning("could not fill a gap from the store: %s", type(exc).__name__)
            page = None
        if page is not None:
            for event in page.events:
                ready, _ = self.sequencer.feed(event)
                for item in ready:
                    self._deliver(item)
        skipped = self.sequencer.skip(channel)
        if skipped or (page is not None and not page.complete):
            self.unfilled_gaps += 1
            log.warning("a gap in %r could not be filled from history", channel)
        for item in skipped:
            self._deliver(item)

    async def close(self) -> None:
        self._jobs.clear()
        self._when_idle.clear()
        tasks = list(self._filling.values())
        for task in tasks:
            task.cancel()
        await cancel_and_wait(*(t for t in tasks if isinstance(t, asyncio.Future)))
