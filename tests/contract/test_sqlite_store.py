"""What only the SQLite store promises, beyond the ``Store`` contract it also passes:
several processes share one file safely, the file outlives the process, and a file that
cannot be a store is refused with a clear error."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tidings.backends import store_from_url
from tidings.backends.base import NewEvent, StoreLimits
from tidings.backends.sqlite import SCHEMA_VERSION, SQLiteStore, SQLiteStoreError
from tidings.core.events import Event, Position

STAMP = "2026-01-01T00:00:00.000Z"

# One writer process: open the shared file, say "ready", wait for "go" on stdin (so all
# writers start together), append batches of 1..4 events, print what was stored.
WRITER = r"""
import asyncio, json, sys
from tidings.backends.base import NewEvent, StoreLimits
from tidings.backends.sqlite import SQLiteStore

async def main(path, channel, writer, batches):
    store = SQLiteStore(path, StoreLimits(history_size=100_000))
    await store.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    stored = []
    for b in range(batches):
        batch = [
            NewEvent(channel, "t", {"writer": writer, "b": b, "i": i}, "2026-01-01T00:00:00.000Z")
            for i in range(1 + b % 4)
        ]
        stored += [(event.id, event.data) for event, _ in await store.append(batch)]
    await store.close()
    print(json.dumps(stored), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def new(channel: str, n: int, *, key: str | None = None) -> NewEvent:
    return NewEvent(channel, "t", {"n": n}, STAMP, idempotency_key=key)


def assert_one_epoch_and_gapless(ids: list[str]) -> tuple[str, list[int]]:
    positions = [Position.parse(i) for i in ids]
    assert all(p is not None for p in positions)
    epochs = {p.epoch for p in positions if p}
    assert len(epochs) == 1, epochs
    offsets = sorted(p.offset for p in positions if p)
    assert offsets == list(range(1, len(ids) + 1)), "an offset was reused or skipped"
    return epochs.pop(), offsets


# --- several writers on one file ---------------------------------------------------------


async def test_processes_appending_concurrently_never_reuse_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    writers = 3
    batches = 60
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), "ch", f"w{w}", str(batches)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    loop = asyncio.get_running_loop()
    try:
        for process in processes:
            assert process.stdout is not None
            ready = await asyncio.wait_for(loop.run_in_executor(None, process.stdout.readline), 20)
            assert ready.strip() == "ready", ready
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [
            await asyncio.to_thread(process.communicate, timeout=30) for process in processes
        ]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    stored: list[tuple[str, dict[str, object]]] = []
    per_writer: dict[str, list[int]] = {}
    for process, (out, errors) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, errors
        mine = [(event_id, data) for event_id, data in json.loads(out.strip().splitlines()[-1])]
        stored += mine
        per_writer[str(mine[0][1]["writer"])] = [int(i.rpartition("-")[2]) for i, _ in mine]
    expected = writers * sum(1 + b % 4 for b in range(batches))
    assert len(stored) == expected
    epoch, _ = assert_one_epoch_and_gapless([event_id for event_id, _ in stored])
    # Each writer's events are in the order it appended them...
    for offsets in per_writer.values():
        assert offsets == sorted(offsets)
    # ...they interleaved (the writers really ran at once)...
    assert any(
        max(a) > min(b) and max(b) > min(a)
        for a in per_writer.values()
        for b in per_writer.values()
        if a is not b
    )
    # ...and the file holds exactly what each writer was told it stored.
    store = SQLiteStore(path, StoreLimits(history_size=100_000))
    try:
        page = await store.read("ch", since=f"{epoch}-0", limit=expected)
    finally:
        await store.close()
    assert page.complete
    assert [(event.id, event.data) for event in page.events] == sorted(
        stored, key=lambda pair: int(pair[0].rpartition("-")[2])
    )


def test_threads_appending_concurrently_never_reuse_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    start = threading.Barrier(2)
    results: list[list[Event]] = [[], []]
    failures: list[BaseException] = []

    async def write(index: int) -> None:
        store = SQLiteStore(path, StoreLimits(history_size=10_000))
        try:
            await store.ping()
            await asyncio.get_running_loop().run_in_executor(None, start.wait, 10)
            for b in range(100):
                stored = await store.append([new("ch", 1000 * index + b), new("ch", -1)])
                results[index] += [event for event, _ in stored]
        finally:
            await store.close()

    def run(index: int) -> None:
        try:
            asyncio.run(write(index))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures
    assert_one_epoch_and_gapless([event.id for result in results for event in result])
    for result in results:
        # A batch's two events are adjacent: no other writer's event between them.
        pairs = zip(result[::2], result[1::2], strict=True)
        assert all(b.position.offset == a.position.offset + 1 for a, b in pairs)


def open_together(path: Path, count: int) -> tuple[list[SQLiteStore], list[BaseException]]:
    """Open ``count`` stores on ``path`` from as many threads at once, outside any loop."""
    start = threading.Barrier(count)
    opened: list[SQLiteStore] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait(10)
        try:
            opened.append(SQLiteStore(path))  # no loop here: it opens before returning
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return opened, failures


def test_stores_opening_a_new_file_together_agree_on_one_epoch(tmp_path: Path) -> None:
    # Hub processes started together on a file that does not exist yet all create it.
    for attempt in range(50):
        opened, failures = open_together(tmp_path / f"new{attempt}.db", 6)
        for store in opened:
            asyncio.run(store.close())
        assert not failures, failures
        assert len({store.epoch for store in opened}) == 1


async def test_an_append_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path, busy_timeout=10)
    try:
        [(first, _)] = await store.append([new("ch", 1)])
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's write transaction
            waiting = asyncio.ensure_future(store.append([new("ch", 2)]))
            # The loop keeps running (this timeout fires) while the append waits.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiting), 0.3)
            assert not waiting.done()
            other.execute("COMMIT")
        finally:
            other.close()
        [(second, created)] = await asyncio.wait_for(waiting, 10)
        assert created
        assert second.position.offset == first.position.offset + 1
    finally:
        await store.close()


async def test_an_append_gives_up_after_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.ping()
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await asyncio.wait_for(store.append([new("ch", 1)]), 10)
        other.execute("ROLLBACK")
        # Nothing was half-stored; the store works again once the lock is free.
        [(event, _)] = await store.append([new("ch", 2)])
        assert event.position.offset == 1
    finally:
        other.close()
        await store.close()


# --- the file outlives the process -------------------------------------------------------


async def test_reopening_keeps_the_epoch_the_events_and_the_offsets(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    before = [event for event, _ in await store.append([new("ch", n) for n in range(5)])]
    epoch = store.epoch
    await store.close()

    store = SQLiteStore(path)
    try:
        await store.ping()
        assert store.epoch == epoch
        page = await store.read("ch", since=before[1].id)
        assert page.complete
        assert page.events == before[2:]
        [(after, _)] = await store.append([new("ch", 5)])
        assert after.position == Position(epoch, before[-1].position.offset + 1)
    finally:
        await store.close()


async def test_idempotency_keys_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    [(first, _)] = await store.append([new("ch", 1, key="k")])
    await store.close()
    store = SQLiteStore(path)
    try:
        [(again, created)] = await store.append([new("ch", 2, key="k")])
        assert not created
        assert again == first
    finally:
        await store.close()


async def test_history_size_bounds_a_reopened_file_with_a_smaller_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path, StoreLimits(history_size=50))
    events = [event for event, _ in await store.append([new("ch", n) for n in range(40)])]
    await store.close()
    store = SQLiteStore(path, StoreLimits(history_size=10))
    try:
        page = await store.read("ch", limit=100)
        assert page.events == events[-10:]
        assert not (await store.read("ch", since=events[5].id)).complete
        assert (await store.read("ch", since=events[29].id)).events == events[30:]
    finally:
        await store.close()


async def test_a_recreated_file_has_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    [(old, _)] = await store.append([new("ch", 1)])
    await store.close()
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    store = SQLiteStore(path)
    try:
        [(fresh, _)] = await store.append([new("ch", 2)])
        assert fresh.position.epoch != old.position.epoch
        # An id from the old file is not mistaken for one of the new file.
        page = await store.read("ch", since=old.id)
        assert not page.complete
    finally:
        await store.close()


async def test_close_joins_the_worker_thread(tmp_path: Path) -> None:
    def workers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("tidings-sqlite")}

    before = workers()
    store = SQLiteStore(tmp_path / "t.db")
    await store.ping()
    assert workers() - before
    await store.close()
    assert workers() == before
    with pytest.raises(SQLiteStoreError, match="closed"):
        await store.ping()


# --- files that cannot be a store ----------------------------------------------------------


def test_a_garbage_file_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(SQLiteStoreError, match="cannot be used as a tidings SQLite store") as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"this is not a database\n" * 200  # left as it was


async def test_a_garbage_file_fails_every_call_inside_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(os.urandom(8192))
    store = SQLiteStore(path)  # inside a running loop: does not block, fails on use
    try:
        for call in (store.ping(), store.append([new("ch", 1)]), store.read("ch")):
            with pytest.raises(SQLiteStoreError, match="cannot be used as a tidings SQLite"):
                await call
    finally:
        await store.close()
        await store.close()


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    other.close()
    with pytest.raises(SQLiteStoreError, match="not a tidings store"):
        SQLiteStore(path)
    with sqlite3.connect(path) as other:  # untouched
        assert other.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
    other.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    asyncio.run(SQLiteStore(path).close())  # creates the file
    with sqlite3.connect(path) as other:
        other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    other.close()
    with pytest.raises(SQLiteStoreError, match="newer tidings"):
        SQLiteStore(path)


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SQLiteStoreError, match=r"directory .* does not exist"):
        SQLiteStore(tmp_path / "nowhere" / "t.db")
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(SQLiteStoreError, match="is a directory"):
        SQLiteStore(tmp_path)


# --- URLs -----------------------------------------------------------------------------------


async def test_store_from_url_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    relative = store_from_url("sqlite:///data/rel.db", StoreLimits(history_size=7))
    absolute = store_from_url(f"sqlite:///{tmp_path}/abs.db?synchronous=full", StoreLimits())
    try:
        assert isinstance(relative, SQLiteStore)
        assert isinstance(absolute, SQLiteStore)
        await relative.ping()
        await absolute.ping()
        assert (tmp_path / "data" / "rel.db").is_file()
        assert relative.limits.history_size == 7
        assert (tmp_path / "abs.db").is_file()
        assert absolute.synchronous == "full"
    finally:
        await relative.close()
        await absolute.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/t.db",
        "sqlite:///t.db?synchronous=off",
        "sqlite:///t.db?busy_timeout=soon",
        "sqlite:///t.db?mode=ro",
    ],
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite store URL"):
        store_from_url(url, StoreLimits())
