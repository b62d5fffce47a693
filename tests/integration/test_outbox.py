"""The PostgreSQL outbox source against a real PostgreSQL (tests/postgres_support.py):
NOTIFY wakes the hub, polling covers missed notifications, a database down at start is
waited for, two nodes on one table make no duplicate, and — the acceptance test — rows
written by concurrent transactions, some rolled back, reach history exactly once each, in
commit order per channel, while the hub is killed twice."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.postgres_support import database_url, postgres_url, scratch_database
from tests.servers import HubProcess, running_hub, start_process
from tidings.hub import Hub
from tidings.settings import Settings
from tidings.sources.postgres import PostgresOutbox, apply_ddl, outbox_ddl

pytestmark = pytest.mark.postgres

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
async def outbox() -> AsyncIterator[str]:
    """The URL of a scratch database holding an empty outbox table."""
    async with scratch_database() as url:
        await apply_ddl(url)
        yield url


async def insert(url: str, *rows: tuple[str, Any]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for channel, data in rows:
            await conn.execute(
                "INSERT INTO tidings_outbox (channel, type, data) VALUES (%s, 'note', %s)",
                (channel, json.dumps(data)),
            )


async def subscribe(ws_url: str, channel: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"{ws_url}/ws?channel={channel}")
    async with asyncio.timeout(5):
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
    return ws


async def next_data(ws: websockets.ClientConnection, timeout: float) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "event":
                return message["data"]["data"]


async def remaining(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM tidings_outbox")).fetchone()
        assert row is not None
        return int(row[0])


async def drained(url: str, timeout: float) -> None:
    """Wait until the outbox is empty: nothing in the database announces it, so look."""
    async with asyncio.timeout(timeout):
        while await remaining(url):
            await asyncio.sleep(0.05)


def test_ddl_names_the_table_and_refuses_odd_names() -> None:
    ddl = outbox_ddl("app.events_outbox")
    assert "CREATE TABLE IF NOT EXISTS app.events_outbox" in ddl
    assert "nextval('app.events_outbox_id_seq')" in ddl
    assert "pg_notify('app.events_outbox', '')" in ddl
    for bad in ("Outbox", "x; DROP TABLE y", "a.b.c", ""):
        with pytest.raises(ValueError, match="lowercase SQL name"):
            outbox_ddl(bad)


async def test_writers_of_one_channel_wait_for_each_other_until_commit(outbox: str) -> None:
    """What makes id order commit order per channel: a second writer of a channel gets
    no id until the first one's transaction ends; a writer of another channel never waits."""
    async with (
        await psycopg.AsyncConnection.connect(outbox) as first,
        await psycopg.AsyncConnection.connect(outbox) as second,
    ):
        await first.execute("INSERT INTO tidings_outbox (channel, data) VALUES ('c', '1')")
        await second.execute("SET lock_timeout = '200ms'")
        await second.execute("INSERT INTO tidings_outbox (channel, data) VALUES ('d', '2')")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await second.execute("INSERT INTO tidings_outbox (channel, data) VALUES ('c', '3')")
        await second.rollback()
        await first.commit()
        await second.execute("INSERT INTO tidings_outbox (channel, data) VALUES ('c', '4')")
        await second.commit()
        cursor = await first.execute("SELECT data FROM tidings_outbox ORDER BY id")
        assert [row[0] for row in await cursor.fetchall()] == [1, 4]


async def test_notify_wakes_the_hub_at_commit(outbox: str) -> None:
    # Polling every 60 s: only the notification can bring a row within the timeout.
    hub = Hub(Settings(sources=(outbox + "?poll=60",)))
    async with running_hub(hub) as served:
        ws = await subscribe(served.ws_url, "orders")
        try:
            await insert(outbox, ("orders", {"n": 1}))
            assert await next_data(ws, 10) == {"n": 1}  # the first may be met by the start
            await insert(outbox, ("orders", {"n": 2}))
            assert await next_data(ws, 5) == {"n": 2}
        finally:
            await ws.close()
        assert await remaining(outbox) == 0
        async with httpx.AsyncClient(base_url=served.url) as http:
            ready = (await http.get("/ready")).json()
        assert ready["sources"] == {hub.sources[0].name: "consuming"}


async def test_polling_finds_rows_whose_notification_was_missed(outbox: str) -> None:
    async with await psycopg.AsyncConnection.connect(outbox, autocommit=True) as conn:
        await conn.execute("DROP TRIGGER tidings_outbox_notify ON tidings_outbox")
    hub = Hub(Settings(sources=(outbox + "?poll=0.2",)))
    async with running_hub(hub) as served:
        ws = await subscribe(served.ws_url, "orders")
        try:
            for n in range(3):
                await insert(outbox, ("orders", {"n": n}))
                assert await next_data(ws, 5) == {"n": n}
        finally:
            await ws.close()


async def test_a_database_down_at_start_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    server = postgres_url()
    name = f"tidings_test_{uuid.uuid4().hex[:12]}"
    url = database_url(server, name).replace("postgres@", "postgres:s3cret@", 1)
    hub = Hub(Settings(sources=(url + "?poll=0.2",)))
    try:
        async with running_hub(hub) as served, httpx.AsyncClient(base_url=served.url) as http:
            source = hub.sources[0]
            assert "s3cret" not in source.name
            async with asyncio.timeout(5):
                while source.status != "failing":  # no event says it; look
                    await asyncio.sleep(0.02)
            ready = await http.get("/ready")
            assert ready.status_code == 200, "a source never makes the hub unready"
            assert ready.json()["sources"][source.name] == "failing"
            async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
                await admin.execute(f"CREATE DATABASE {name}".encode())
            await apply_ddl(database_url(server, name))
            ws = await subscribe(served.ws_url, "late")
            try:
                await insert(database_url(server, name), ("late", "here"))
                assert await next_data(ws, 15) == "here"
            finally:
                await ws.close()
    finally:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    assert "s3cret" not in caplog.text
    assert any("retrying" in r.getMessage() for r in caplog.records), "down and silent"


async def test_two_nodes_on_one_table_publish_each_row_once(outbox: str) -> None:
    """One node consumes, the other stands by; stopping the first hands the table over.
    Each node has its own memory store: a row consumed twice would be in both."""
    a = Hub(Settings(sources=(outbox + "?poll=0.1&batch=7",), history_size=1000))
    b = Hub(Settings(sources=(outbox + "?poll=0.1&batch=7",), history_size=1000))
    await a.start()
    await b.start()
    try:
        await insert(outbox, *[(f"c{n % 3}", n) for n in range(200)])
        await drained(outbox, 10)
        first = {a.sources[0].status, b.sources[0].status}
        assert first == {"consuming", "standby"}
        leader, other = (a, b) if a.sources[0].status == "consuming" else (b, a)
        await leader.stop()
        await insert(outbox, *[(f"c{n % 3}", n) for n in range(200, 300)])
        await drained(outbox, 10)
        assert other.sources[0].status == "consuming"
        seen: list[int] = []
        for hub in (a, b):
            for channel in ("c0", "c1", "c2"):
                page = await hub.store.read(channel, since=None, limit=1000)
                data = [event.data for event in page.events]
                assert data == sorted(data), "out of order within a channel"
                seen += data
        assert sorted(seen) == list(range(300))
    finally:
        await a.stop()
        await b.stop()


async def test_a_stopped_source_stops_and_an_added_one_runs(outbox: str) -> None:
    hub = Hub(Settings())
    async with running_hub(hub) as served:
        source = hub.add_source(PostgresOutbox(outbox))
        ws = await subscribe(served.ws_url, "added")
        try:
            await insert(outbox, ("added", 1))
            assert await next_data(ws, 10) == 1
        finally:
            await ws.close()
    assert source.status == "stopped"


# -- acceptance ---------------------------------------------------------------------------

ROWS = 10_000
WRITERS = 20
CHANNELS = [f"acc{n}" for n in range(10)]


class Writers:
    """Concurrent transactions filling the outbox. Each row carries its channel's next
    sequence number, taken from a counter row updated in the same transaction: the row
    lock orders the transactions of a channel, so sequence order is commit order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.left = ROWS
        self.committed = 0
        self.rolled_back: set[str] = set()
        self.rng = random.Random(15)

    async def setup(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("CREATE TABLE seqs (channel text PRIMARY KEY, n int NOT NULL)")
            for channel in CHANNELS:
                await conn.execute("INSERT INTO seqs VALUES (%s, 0)", (channel,))

    async def run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            await conn.execute("SET synchronous_commit = off")  # speed; order is the same
            await conn.commit()
            while self.left > 0:
                count = min(self.left, self.rng.randint(1, 6))
                self.left -= count
                # Channels in one order across transactions: no deadlock on their locks.
                channels = sorted(self.rng.choice(CHANNELS) for _ in range(count))
                tx = uuid.uuid4().hex
                for channel in channels:
                    cursor = await conn.execute(
                        "UPDATE seqs SET n = n + 1 WHERE channel = %s RETURNING n", (channel,)
                    )
                    row = await cursor.fetchone()
                    assert row is not None
                    await conn.execute(
                        "INSERT INTO tidings_outbox (channel, type, data) VALUES (%s, 'acc', %s)",
                        (channel, json.dumps({"seq": row[0], "tx": tx})),
                    )
                    if self.rng.random() < 0.3:
                        await asyncio.sleep(0)  # let other transactions interleave
                if self.rng.random() < 0.1:
                    await conn.rollback()
                    self.rolled_back.add(tx)
                    self.left += count
                else:
                    await conn.commit()
                    self.committed += count


async def test_acceptance_exactly_once_in_commit_order_through_two_kills(
    outbox: str, tmp_path: Path, processes: list[HubProcess]
) -> None:
    writers = Writers(outbox)
    await writers.setup()
    args = (
        "--store",
        f"sqlite:///{tmp_path / 'hub.db'}",
        "--history-size",
        "5000",
        "--source",
        outbox + "?batch=200&poll=0.2",
        "--log-level",
        "warning",
    )

    async def serve() -> HubProcess:
        process = await asyncio.to_thread(start_process, *args)
        processes.append(process)
        return process

    async with asyncio.timeout(80):
        hub = await serve()
        writing = asyncio.gather(*(writers.run() for _ in range(WRITERS)))
        for threshold in (ROWS // 4, ROWS // 2):
            # Kill while rows are being written and consumed.
            while writers.committed < threshold:
                await asyncio.sleep(0.01)
            hub.stop(signal.SIGKILL)
            hub = await serve()
        await writing
        await drained(outbox, 30)

        async with httpx.AsyncClient(base_url=hub.url) as http:
            total = 0
            for channel in CHANNELS:
                answer = await http.get(
                    f"/api/v1/channels/{channel}/history", params={"limit": 5000}
                )
                events = answer.json()["events"]
                data = [event["data"] for event in events]
                async with await psycopg.AsyncConnection.connect(outbox) as conn:
                    cursor = await conn.execute("SELECT n FROM seqs WHERE channel = %s", (channel,))
                    row = await cursor.fetchone()
                assert row is not None
                assert [d["seq"] for d in data] == list(range(1, row[0] + 1)), channel
                assert not {d["tx"] for d in data} & writers.rolled_back
                total += len(data)
    assert total == writers.committed == ROWS
    assert writers.rolled_back, "the test rolled nothing back"
