"""The Records contract (tidings.backends.base.Records) on every store kind: the records
kept beside a memory, SQLite or Redis store (webhook endpoints and their outbox)."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import MakeStore, StoreFactory
from tidings.backends import records_for
from tidings.backends.base import Records
from tidings.errors import LimitExceeded


@pytest.fixture
async def records(make_store: MakeStore) -> Records:
    return records_for(await make_store())


async def test_put_get_replace_delete(records: Records) -> None:
    assert isinstance(records, Records)
    assert await records.put("ns", "a", b"one", ready=None)
    assert await records.get("ns", "a") == b"one"
    assert await records.get("other", "a") is None
    assert not await records.put("ns", "a", b"two", ready=None, if_absent=True)
    assert await records.get("ns", "a") == b"one"
    assert await records.put("ns", "a", b"two", ready=5.0)
    assert await records.get("ns", "a") == b"two"
    assert await records.ready_count("ns") == 1
    assert await records.delete("ns", "a")
    assert not await records.delete("ns", "a")
    assert await records.ready_count("ns") == 0


async def test_newest_is_by_key_greatest_first_and_drop_empties(records: Records) -> None:
    for key in ("k2", "k1", "k3"):
        await records.put("ns", key, key.encode(), ready=None)
    await records.put("elsewhere", "k9", b"x", ready=None)
    assert await records.newest("ns") == [b"k3", b"k2", b"k1"]
    assert await records.newest("ns", limit=1) == [b"k3"]
    await records.drop("ns")
    assert await records.newest("ns") == []
    assert await records.newest("elsewhere") == [b"x"]


async def test_the_limit_counts_ready_records_and_refuses_new_keys(records: Records) -> None:
    await records.put("ns", "done", b"", ready=None, limit=2)  # not ready: not counted
    await records.put("ns", "a", b"", ready=1.0, limit=2)
    await records.put("ns", "b", b"", ready=1.0, limit=2)
    with pytest.raises(LimitExceeded):
        await records.put("ns", "c", b"", ready=1.0, limit=2)
    await records.put("ns", "a", b"again", ready=9.0, limit=2)  # replacing is not adding


async def test_claim_leases_what_is_ready(records: Records) -> None:
    await records.put("ns", "late", b"late", ready=20.0)
    await records.put("ns", "early", b"early", ready=10.0)
    await records.put("ns", "never", b"never", ready=None)
    await records.put("ns", "future", b"future", ready=100.0)
    assert await records.claim("ns", 30.0, lease=10.0, limit=10) == [b"early", b"late"]
    assert await records.claim("ns", 35.0, lease=10.0, limit=10) == []
    assert await records.claim("ns", 40.0, lease=10.0, limit=1) == [b"early"]
    # Rescheduled by its owner (put with a new ready time): claimable then, not before.
    await records.put("ns", "late", b"late2", ready=60.0)
    assert await records.claim("ns", 59.0, lease=10.0, limit=10) == [b"early"]
    assert await records.claim("ns", 60.0, lease=10.0, limit=10) == [b"late2"]


async def test_two_nodes_never_claim_the_same_record(
    store_factory: StoreFactory, make_store: MakeStore
) -> None:
    if not store_factory.shared:
        pytest.skip("this store is one node's own")
    a, b = records_for(await make_store()), records_for(await make_store())
    for n in range(40):
        await a.put("ns", f"k{n:02d}", b"%d" % n, ready=float(n))
    claims = await asyncio.gather(
        *(node.claim("ns", 100.0, lease=30.0, limit=6) for node in (a, b) for _ in range(5))
    )
    got = [record for claimed in claims for record in claimed]
    assert len(got) == len(set(got)) == 40
