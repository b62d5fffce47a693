"""The fan-out with plain values: fake connections that record what they get, a memory
store, and a scheduler turned by hand, so slicing, job merging and gap filling are seen
turn by turn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from tidings.backends.base import NewEvent, StoreLimits
from tidings.backends.memory import MemoryStore
from tidings.core.events import EncodedEvent, Event, Position
from tidings.fanout import FanOut

EPOCH = "ep1"


class Session:
    def __init__(self) -> None:
        self.got: list[EncodedEvent] = []

    def deliver(self, encoded: EncodedEvent) -> None:
        self.got.append(encoded)

    @property
    def offsets(self) -> list[int]:
        return [e.event.position.offset for e in self.got]


class Connection:
    def __init__(self) -> None:
        self.session = Session()


class Turns:
    """A scheduler whose turns the test runs one at a time."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.slept: list[float] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def turn(self) -> None:
        """Run what was scheduled before this turn (as the loop does)."""
        due, self.soon = self.soon, []
        for callback in due:
            callback()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.append(task)
        return task

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)


def event(offset: int, channel: str = "c") -> Event:
    return Event(channel, "t", {"n": offset}, "2026-12-03T00:00:00.000Z", Position(EPOCH, offset))


def fanout(store: Any = None, **kwargs: Any) -> tuple[FanOut, Turns]:
    turns = Turns()
    hub = FanOut(store or MemoryStore(), history_size=100, scheduler=turns, **kwargs)
    return hub, turns


def follow(out: FanOut, n: int, channel: str = "c", at: int = 0) -> list[Connection]:
    connections = [Connection() for _ in range(n)]
    for connection in connections:
        out.add(channel, connection)  # type: ignore[arg-type]
    out.started(channel, Position(EPOCH, at))
    return connections


def test_a_small_channel_is_served_at_once_in_order() -> None:
    out, turns = fanout()
    connections = follow(out, 3)
    for offset in (1, 2, 3):
        out.on_event(event(offset))
    assert turns.soon == []  # nothing waited for a turn
    assert [c.session.offsets for c in connections] == [[1, 2, 3]] * 3
    # One encoding per event, shared by every subscriber.
    assert connections[0].session.got[0] is connections[2].session.got[0]


def test_a_big_channel_is_served_one_slice_per_turn() -> None:
    out, turns = fanout()
    out.slice_size = 4
    connections = follow(out, 10)
    out.on_event(event(1))
    served = [sum(bool(c.session.got) for c in connections)]
    while turns.soon:
        turns.turn()
        served.append(sum(bool(c.session.got) for c in connections))
    assert served == [0, 4, 8, 10]


def test_events_behind_a_waiting_job_join_it_and_arrive_together() -> None:
    out, turns = fanout()
    out.slice_size = 4
    connections = follow(out, 6)
    for offset in (1, 2, 3):
        out.on_event(event(offset))
    assert len(out._jobs) == 1 and len(out._jobs[0].events) == 3  # one job, merged
    turns.turn()
    # A turn's budget (4 deliveries) counts every event: each connection served gets all
    # three at once, and a turn serves at least one connection more while budget is left.
    assert sorted(len(c.session.got) for c in connections) == [0, 0, 0, 0, 3, 3]
    while turns.soon:
        turns.turn()
    assert all(c.session.offsets == [1, 2, 3] for c in connections)


def test_a_subscriber_change_starts_a_new_job() -> None:
    out, turns = fanout()
    out.slice_size = 2
    connections = follow(out, 3)
    out.on_event(event(1))
    late = Connection()
    out.add("c", late)  # type: ignore[arg-type]
    out.on_event(event(2))
    assert len(out._jobs) == 2  # the first job keeps the subscribers it had
    while turns.soon:
        turns.turn()
    assert all(c.session.offsets == [1, 2] for c in connections)
    assert late.session.offsets == [2]


def test_channels_keep_their_order_behind_each_other() -> None:
    out, turns = fanout()
    out.slice_size = 2
    a = follow(out, 3, "a")
    b = follow(out, 1, "b")
    out.on_event(event(1, "a"))
    out.on_event(event(1, "b"))  # behind a's job, though b alone would fit in a turn
    assert b[0].session.got == []
    while turns.soon:
        turns.turn()
    assert [c.session.offsets for c in a] == [[1]] * 3 and b[0].session.offsets == [1]


async def test_a_gap_waits_its_grace_then_is_filled_from_the_store() -> None:
    store = MemoryStore(StoreLimits(history_size=100))
    stored = store.append_now(
        [NewEvent("c", "t", {"n": n}, "2026-12-03T00:00:00.000Z", None) for n in range(3)]
    )
    epoch = stored[0][0].position.epoch
    out, turns = fanout(store, gap_grace=0.25)
    connection = Connection()
    out.add("c", connection)  # type: ignore[arg-type]
    out.started("c", Position(epoch, 0))
    third = stored[2][0]
    out.on_event(third)  # 1 and 2 were lost on the way
    assert connection.session.got == []
    await asyncio.gather(*turns.tasks)
    assert turns.slept == [0.25]
    assert connection.session.offsets == [1, 2, 3]
    assert out.unfilled_gaps == 0


async def test_a_gap_that_closes_by_itself_is_not_fetched() -> None:
    reads: list[str] = []

    class CountingStore(MemoryStore):
        async def read(self, channel: str, **kwargs: Any) -> Any:
            reads.append(channel)
            return await super().read(channel, **kwargs)

    out, turns = fanout(CountingStore())
    connection = follow(out, 1)[0]
    out.on_event(event(2))
    out.on_event(event(1))  # the late one: the gap is closed within the grace
    await asyncio.gather(*turns.tasks)
    assert connection.session.offsets == [1, 2]
    assert turns.slept == [0.2] and reads == []
    assert out.unfilled_gaps == 0


async def test_a_gap_the_store_cannot_fill_is_skipped_and_counted() -> None:
    out, turns = fanout()  # an empty store: what was lost is gone
    connection = follow(out, 1)[0]
    out.on_event(event(3))
    await asyncio.gather(*turns.tasks)
    assert connection.session.offsets == [3]  # delivered; the session answers the hole
    assert out.unfilled_gaps == 1


async def test_resync_fills_every_followed_channel_at_once() -> None:
    store = MemoryStore(StoreLimits(history_size=100))
    new = [NewEvent(ch, "t", {}, "2026-12-03T00:00:00.000Z", None) for ch in ("a", "b")]
    stored = [e for e, _ in store.append_now(new)]
    out, turns = fanout(store)
    a, b = Connection(), Connection()
    out.add("a", a)  # type: ignore[arg-type]
    out.add("b", b)  # type: ignore[arg-type]
    out.started("a", Position(stored[0].position.epoch, 0))
    out.started("b", Position(stored[1].position.epoch, 0))
    out.resync()  # the broker reconnected: what it lost meanwhile comes from the store
    await asyncio.gather(*turns.tasks)
    assert turns.slept == []  # no grace: the loss is certain
    assert a.session.offsets == [1] and b.session.offsets == [1]


async def test_close_cancels_pending_fills() -> None:
    out, turns = fanout(gap_grace=60)

    async def never(delay: float) -> None:
        await asyncio.Event().wait()

    turns.sleep = never  # type: ignore[method-assign]
    follow(out, 1)
    out.on_event(event(5))
    assert len(turns.tasks) == 1
    await out.close()
    assert turns.tasks[0].cancelled()
