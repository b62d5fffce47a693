"""The ``Store`` contract (``tidings.backends.base.Store``), run against every store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.contract.conftest import MakeStore, StoreFactory
from tidings.backends.base import NewEvent, Store
from tidings.core.events import Event, Position, format_timestamp

TTL = 0.3  # seconds: short, because the passing of time is what these tests check


def new(channel: str, n: int = 0, *, type_: str = "t", key: str | None = None) -> NewEvent:
    return NewEvent(
        channel=channel,
        type=type_,
        data={"n": n},
        timestamp=format_timestamp(datetime.now(UTC)),
        idempotency_key=key,
    )


async def append(store: Store, channel: str, count: int, start: int = 1) -> list[Event]:
    stored = await store.append([new(channel, n) for n in range(start, start + count)])
    assert all(created for _, created in stored)
    return [event for event, _ in stored]


def offsets(events: list[Event]) -> list[int]:
    return [event.position.offset for event in events]


def unique_key(channel: str, name: str) -> str:
    return f"{channel}/{name}"


# --- append: positions --------------------------------------------------------------------


async def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


async def test_append_returns_the_events_with_positions(store: Store, channel: str) -> None:
    published = [new(channel, n, type_=f"type{n}") for n in range(3)]
    stored = await store.append(published)
    assert [created for _, created in stored] == [True, True, True]
    for (event, _), sent in zip(stored, published, strict=True):
        assert (event.channel, event.type, event.data, event.timestamp) == (
            sent.channel,
            sent.type,
            sent.data,
            sent.timestamp,
        )
        assert event.id == str(event.position)
        assert Position.parse(event.id) == event.position


async def test_offsets_grow_by_one_with_one_epoch(store: Store, channel: str) -> None:
    events = await append(store, channel, 4)
    events += await append(store, channel, 1)
    events += await append(store, channel, 3)
    assert len({event.position.epoch for event in events}) == 1
    first = events[0].position.offset
    assert offsets(events) == list(range(first, first + 8))


async def test_an_empty_append_stores_nothing(store: Store, channel: str) -> None:
    assert await store.append([]) == []
    page = await store.read(channel)
    assert page.events == []


async def test_channels_count_independently(store: Store, channel: str) -> None:
    other = channel + "-other"
    stored = await store.append(
        [new(channel, 1), new(other, 1), new(channel, 2), new(other, 2), new(channel, 3)]
    )
    mine = [event for event, _ in stored if event.channel == channel]
    theirs = [event for event, _ in stored if event.channel == other]
    assert offsets(mine) == list(range(offsets(mine)[0], offsets(mine)[0] + 3))
    assert offsets(theirs) == list(range(offsets(theirs)[0], offsets(theirs)[0] + 2))
    assert [e.data["n"] for e in mine] == [1, 2, 3]
    assert [e.data["n"] for e in (await store.read(other)).events] == [1, 2]


async def test_order_is_preserved(store: Store, channel: str) -> None:
    events = await append(store, channel, 10)
    page = await store.read(channel)
    assert page.events == events
    assert page.complete


async def test_concurrent_appends_never_reuse_an_offset(store: Store, channel: str) -> None:
    batches = [[new(channel, 10 * b + i) for i in range(1 + b % 3)] for b in range(40)]
    results = await asyncio.gather(*(store.append(batch) for batch in batches))
    everything = [event for result in results for event, _ in result]
    assert len(everything) == sum(len(batch) for batch in batches)
    assert len({event.position.epoch for event in everything}) == 1
    numbers = sorted(offsets(everything))
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for batch, result in zip(batches, results, strict=True):
        # Each batch is stored in the order given.
        assert [event.data for event, _ in result] == [sent.data for sent in batch]
        assert offsets([event for event, _ in result]) == sorted(
            offsets([event for event, _ in result])
        )
    page = await store.read(channel, limit=1000)
    assert offsets(page.events) == numbers


async def test_nodes_appending_concurrently_never_reuse_an_offset(
    store_factory: StoreFactory, make_store: MakeStore, channel: str
) -> None:
    if not store_factory.shared:
        pytest.skip("each store of this backend has its own storage: there is no second node")
    nodes = [await make_store(), await make_store()]
    results = await asyncio.gather(
        *(nodes[i % 2].append([new(channel, i), new(channel, i)]) for i in range(40))
    )
    everything = [event for result in results for event, _ in result]
    assert len({event.position.epoch for event in everything}) == 1
    numbers = sorted(offsets(everything))
    assert numbers == list(range(numbers[0], numbers[0] + 80))


async def test_data_round_trips(store: Store, channel: str) -> None:
    values: list[Any] = [
        None,
        True,
        0,
        -(2**53),
        1.5,
        "caf\u00e9 \u2603 \U0001f600",
        "",
        [],
        {},
        {"nested": {"list": [1, "two", None, {"x": False}]}, "emoji": "\U0001f600"},
    ]
    stored = await store.append(
        [NewEvent(channel, "t", value, "2026-01-01T00:00:00.000Z") for value in values]
    )
    assert [event.data for event, _ in stored] == values
    page = await store.read(channel, limit=100)
    assert [event.data for event in page.events] == values
    assert [event for event, _ in stored] == page.events


# --- idempotency ------------------------------------------------------------------------


async def test_idempotency_key_returns_the_first_event(store: Store, channel: str) -> None:
    key = unique_key(channel, "k")
    [(first, created)] = await store.append([new(channel, 1, key=key)])
    assert created
    [(again, created_again)] = await store.append([new(channel, 2, key=key)])
    assert not created_again
    assert again == first
    page = await store.read(channel)
    assert page.events == [first]


async def test_idempotency_key_repeated_in_one_batch(store: Store, channel: str) -> None:
    key = unique_key(channel, "k")
    stored = await store.append(
        [new(channel, 1, key=key), new(channel, 2), new(channel, 3, key=key)]
    )
    assert [created for _, created in stored] == [True, True, False]
    assert stored[2][0] == stored[0][0]
    assert offsets([stored[0][0], stored[1][0]]) == [
        stored[0][0].position.offset,
        stored[0][0].position.offset + 1,
    ]
    assert [event.data["n"] for event in (await store.read(channel)).events] == [1, 2]


async def test_different_keys_are_different_events(store: Store, channel: str) -> None:
    stored = await store.append(
        [
            new(channel, 1, key=unique_key(channel, "a")),
            new(channel, 2, key=unique_key(channel, "b")),
        ]
    )
    assert [created for _, created in stored] == [True, True]
    assert stored[0][0] != stored[1][0]


async def test_concurrent_appends_with_one_key_store_one_event(store: Store, channel: str) -> None:
    key = unique_key(channel, "k")
    results = await asyncio.gather(*(store.append([new(channel, i, key=key)]) for i in range(20)))
    events = [result[0][0] for result in results]
    assert sum(result[0][1] for result in results) == 1
    assert all(event == events[0] for event in events)
    assert len((await store.read(channel)).events) == 1


async def test_idempotency_keys_expire(make_store: MakeStore, channel: str) -> None:
    store = await make_store(idempotency_ttl=TTL)
    key = unique_key(channel, "k")
    [(first, _)] = await store.append([new(channel, 1, key=key)])
    await asyncio.sleep(TTL + 0.15)
    [(second, created)] = await store.append([new(channel, 2, key=key)])
    assert created
    assert second.position.offset == first.position.offset + 1


# --- bounds -------------------------------------------------------------------------------


async def test_history_size_bound(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_size=3)
    events = await append(store, channel, 5)
    page = await store.read(channel, limit=100)
    assert page.events == events[2:]
    assert page.complete
    assert page.position == events[-1].position


async def test_history_size_bound_is_per_channel(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_size=2)
    other = channel + "-other"
    mine = await append(store, channel, 2)
    await append(store, other, 5)
    assert (await store.read(channel)).events == mine


async def test_history_ttl_bound(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_ttl=TTL)
    old = await append(store, channel, 2)
    await asyncio.sleep(TTL + 0.15)
    young = await append(store, channel, 1, start=3)
    page = await store.read(channel, limit=100)
    assert page.events == young
    assert page.position == young[-1].position
    # The expired events are missed by a reader who saw only the first one...
    assert not (await store.read(channel, since=old[0].id)).complete
    # ...but not by one who saw both.
    resumed = await store.read(channel, since=old[1].id)
    assert resumed.complete
    assert resumed.events == young


async def test_history_ttl_expires_everything(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_ttl=TTL)
    events = await append(store, channel, 2)
    await asyncio.sleep(TTL + 0.15)
    page = await store.read(channel)
    assert page.events == []
    assert page.position == events[-1].position
    caught_up = await store.read(channel, since=events[-1].id)
    assert caught_up.complete
    assert caught_up.events == []
    assert not (await store.read(channel, since=events[0].id)).complete


async def test_positions_continue_after_expiry(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_ttl=TTL, history_size=2)
    events = await append(store, channel, 3)
    await asyncio.sleep(TTL + 0.15)
    [later] = await append(store, channel, 1, start=4)
    assert later.position.epoch == events[-1].position.epoch
    assert later.position.offset == events[-1].position.offset + 1


# --- read ----------------------------------------------------------------------------------


async def test_read_since_returns_what_followed(store: Store, channel: str) -> None:
    events = await append(store, channel, 6)
    page = await store.read(channel, since=events[2].id)
    assert page.complete
    assert page.events == events[3:]
    assert page.position == events[-1].position


async def test_read_since_the_newest_event_is_complete_and_empty(
    store: Store, channel: str
) -> None:
    events = await append(store, channel, 3)
    page = await store.read(channel, since=events[-1].id)
    assert page.complete
    assert page.events == []


async def test_read_since_before_the_first_event(store: Store, channel: str) -> None:
    events = await append(store, channel, 3)
    before = Position(events[0].position.epoch, events[0].position.offset - 1)
    page = await store.read(channel, since=str(before))
    assert page.complete
    assert page.events == events


async def test_position_of_an_empty_channel_resumes_exactly(store: Store, channel: str) -> None:
    # A new stream's cursor is the page position of a channel that has no events yet;
    # resuming from it must be complete and deliver everything published since.
    empty = await store.read(channel, limit=0)
    assert empty.complete
    assert empty.events == []
    events = await append(store, channel, 2)
    assert all(event.position.follows(empty.position) for event in events)
    page = await store.read(channel, since=str(empty.position))
    assert page.complete
    assert page.events == events


async def test_read_since_with_limit(store: Store, channel: str) -> None:
    events = await append(store, channel, 10)
    page = await store.read(channel, since=events[1].id, limit=3)
    assert page.complete
    assert page.events == events[2:5]
    assert page.position == events[-1].position


async def test_read_since_an_evicted_position_is_incomplete(
    make_store: MakeStore, channel: str
) -> None:
    store = await make_store(history_size=3)
    events = await append(store, channel, 6)
    for seen in events[:2]:
        page = await store.read(channel, since=seen.id)
        assert not page.complete, seen.id
        assert page.position == events[-1].position
    # The oldest retained event's predecessor is still exactly resumable.
    page = await store.read(channel, since=events[2].id)
    assert page.complete
    assert page.events == events[3:]


@pytest.mark.parametrize(
    "since", ["", "garbage", "-", "-1", "abc", "a-b-c", "\u2603-1", "x" * 300, "ab cd-1"]
)
async def test_read_since_unknown_text_is_incomplete(
    store: Store, channel: str, since: str
) -> None:
    events = await append(store, channel, 3)
    page = await store.read(channel, since=since)
    assert not page.complete
    assert page.position == events[-1].position


async def test_read_since_another_epoch_is_incomplete(store: Store, channel: str) -> None:
    events = await append(store, channel, 3)
    epoch = events[0].position.epoch
    for other in (epoch + "0", "zz" + epoch, "other"):
        page = await store.read(channel, since=str(Position(other, 1)))
        assert not page.complete, other
        assert page.position == events[-1].position


async def test_read_since_a_future_offset_is_incomplete(store: Store, channel: str) -> None:
    events = await append(store, channel, 3)
    last = events[-1].position
    for ahead in (1, 100):
        page = await store.read(channel, since=str(Position(last.epoch, last.offset + ahead)))
        assert not page.complete, ahead


async def test_read_since_on_an_unknown_channel(store: Store, channel: str) -> None:
    empty = await store.read(channel)
    page = await store.read(channel, since=str(Position(empty.position.epoch, 5)))
    assert not page.complete
    assert page.events == []


async def test_read_without_since_returns_the_newest(store: Store, channel: str) -> None:
    events = await append(store, channel, 10)
    page = await store.read(channel, limit=3)
    assert page.complete
    assert page.events == events[-3:]
    assert page.position == events[-1].position


async def test_read_default_limit_is_100(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_size=1000)
    events = await append(store, channel, 120)
    assert (await store.read(channel)).events == events[-100:]


async def test_read_with_limit_zero_gives_only_the_position(store: Store, channel: str) -> None:
    events = await append(store, channel, 4)
    page = await store.read(channel, limit=0)
    assert page.complete
    assert page.events == []
    assert page.position == events[-1].position


async def test_read_of_an_unknown_channel(store: Store, channel: str) -> None:
    page = await store.read(channel)
    assert page.complete
    assert page.events == []


async def test_reads_do_not_change_the_history(store: Store, channel: str) -> None:
    events = await append(store, channel, 3)
    for _ in range(3):
        await store.read(channel, since="garbage")
        await store.read(channel, since=events[0].id, limit=1)
        await store.read(channel + "-never-written")
    assert (await store.read(channel)).events == events
    [after] = await append(store, channel, 1, start=4)
    assert after.position.offset == events[-1].position.offset + 1


# --- ping and close -------------------------------------------------------------------------


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_close_is_idempotent(make_store: MakeStore) -> None:
    store = await make_store()
    await store.close()
    await store.close()


async def test_ping_raises_when_unreachable(store_factory: StoreFactory) -> None:
    store = await store_factory.unreachable()
    if store is None:
        pytest.skip("this store is in-process: it cannot be unreachable")
    try:
        with pytest.raises(Exception):  # noqa: B017 - any error says "unreachable"
            await asyncio.wait_for(store.ping(), 10)
    finally:
        await store.close()


# --- channels: what has history -----------------------------------------------------------


async def test_channels_lists_what_has_history_newest_first(store: Store, channel: str) -> None:
    quiet, busy = f"{channel}-quiet", f"{channel}-busy"
    await append(store, quiet, 1)
    events = await append(store, busy, 3)
    listed = {c.channel: c for c in await store.channels() if c.channel.startswith(channel)}
    assert set(listed) == {quiet, busy}
    assert listed[busy].events == 3
    assert listed[busy].last_event_at == events[-1].timestamp
    assert listed[quiet].events == 1
    newest_first = [c.last_event_at for c in await store.channels()]
    assert newest_first == sorted(newest_first, reverse=True)


async def test_channels_counts_only_retained_events(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_size=2)
    await append(store, channel, 5)
    (listed,) = [c for c in await store.channels() if c.channel == channel]
    assert listed.events == 2


async def test_channels_leaves_out_expired_history(make_store: MakeStore, channel: str) -> None:
    store = await make_store(history_ttl=TTL)
    await append(store, channel, 2)
    assert [c for c in await store.channels() if c.channel == channel] != []
    await asyncio.sleep(TTL + 0.15)
    assert [c for c in await store.channels() if c.channel == channel] == []


async def test_channels_honours_its_limit(store: Store, channel: str) -> None:
    for n in range(3):
        await append(store, f"{channel}-{n}", 1)
    assert len(await store.channels(limit=2)) == 2
