"""The Schedules contract (tidings.backends.base.Schedules), on every store kind: the
schedules kept beside a memory, SQLite or Redis store."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import MakeStore, StoreFactory
from tidings.backends import schedules_for
from tidings.backends.base import Schedules
from tidings.core.scheduled import Scheduled, new_version
from tidings.errors import LimitExceeded

LIMIT = 1000


def entry(key: str, at: float, channel: str = "c", data: object = None) -> Scheduled:
    return Scheduled(key, channel, "t", data, at, new_version())


@pytest.fixture
async def schedules(make_store: MakeStore) -> Schedules:
    return schedules_for(await make_store())


async def test_put_get_replace_cancel(schedules: Schedules) -> None:
    first = entry("k", 100.0, data={"n": 1})
    assert isinstance(schedules, Schedules)
    assert await schedules.put(first, limit=LIMIT) is None
    assert await schedules.get("k") == first
    second = entry("k", 200.0, data={"n": 2})
    assert await schedules.put(second, limit=LIMIT) == first
    assert await schedules.get("k") == second
    assert await schedules.count() == 1
    assert await schedules.cancel("k") == second
    assert await schedules.cancel("k") is None
    assert await schedules.get("k") is None
    assert await schedules.count() == 0


async def test_pending_is_by_due_time_and_filters_by_channel(schedules: Schedules) -> None:
    for key, at, channel in (
        ("b", 30.0, "x"),
        ("a", 10.0, "y"),
        ("c", 20.0, "x"),
        ("d", 20.0, "x"),
    ):
        await schedules.put(entry(key, at, channel), limit=LIMIT)
    assert [e.key for e in await schedules.pending()] == ["a", "c", "d", "b"]
    assert [e.key for e in await schedules.pending(channel="x")] == ["c", "d", "b"]
    assert [e.key for e in await schedules.pending(limit=2)] == ["a", "c"]


async def test_the_limit_refuses_new_keys_but_not_replacements(schedules: Schedules) -> None:
    await schedules.put(entry("a", 1.0), limit=2)
    await schedules.put(entry("b", 1.0), limit=2)
    with pytest.raises(LimitExceeded) as refused:
        await schedules.put(entry("c", 1.0), limit=2)
    assert refused.value.code == "too_many_scheduled"
    await schedules.put(entry("a", 5.0), limit=2)  # a replacement: still two
    assert await schedules.count() == 2


async def test_claim_takes_due_entries_once_until_the_lease_ends(schedules: Schedules) -> None:
    await schedules.put(entry("late", 50.0), limit=LIMIT)
    await schedules.put(entry("early", 10.0), limit=LIMIT)
    await schedules.put(entry("future", 1000.0), limit=LIMIT)
    assert await schedules.next_due() == 10.0
    claimed = await schedules.claim(60.0, lease=30.0, limit=10)
    assert [e.key for e in claimed] == ["early", "late"]
    assert await schedules.claim(70.0, lease=30.0, limit=10) == []  # leased
    assert await schedules.next_due() == 90.0  # when the leases end
    # Claimed but not done: still pending, and due again once the lease ran out.
    assert len(await schedules.pending()) == 3
    again = await schedules.claim(95.0, lease=30.0, limit=1)
    assert [e.key for e in again] == ["early"]
    await schedules.done(again[0])
    assert await schedules.get("early") is None


async def test_done_keeps_a_replacement_made_while_firing(schedules: Schedules) -> None:
    await schedules.put(entry("k", 10.0), limit=LIMIT)
    (claimed,) = await schedules.claim(20.0, lease=30.0, limit=10)
    moved = entry("k", 500.0)
    await schedules.put(moved, limit=LIMIT)
    await schedules.done(claimed)
    assert await schedules.get("k") == moved
    assert await schedules.next_due() == 500.0
    assert await schedules.claim(100.0, lease=30.0, limit=10) == []


async def test_two_nodes_never_claim_the_same_entry(
    store_factory: StoreFactory, make_store: MakeStore
) -> None:
    if not store_factory.shared:
        pytest.skip("this store is one node's own")
    a, b = schedules_for(await make_store()), schedules_for(await make_store())
    for n in range(50):
        await a.put(entry(f"k{n}", float(n)), limit=LIMIT)
    claims = await asyncio.gather(
        *(node.claim(100.0, lease=30.0, limit=7) for node in (a, b) for _ in range(5))
    )
    keys = [e.key for claimed in claims for e in claimed]
    assert len(keys) == len(set(keys)) == 50
    assert await b.get("k3") is not None  # both see every entry
