"""How fast a hub consumes a PostgreSQL outbox: rows per second, table to history.

Creates a scratch database on ``--server``, fills its outbox with ``--rows`` rows over
``--channels`` channels (before the hub starts, so the figure is consumption alone), starts
an in-process hub with that source and the given store, and times until the table is
empty. The database is dropped afterwards.

    python -m benchmarks.outbox_throughput --rows 50000 --batch 500 --store memory://
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tidings.core.events import Event, Publication
from tidings.hub import Hub
from tidings.settings import Settings
from tidings.sources.postgres import PostgresOutbox, apply_ddl


class Counting:
    """The hub as the source's sink, telling when every row was published."""

    def __init__(self, hub: Hub, rows: int) -> None:
        self.hub = hub
        self.left = rows
        self.done = asyncio.Event()
        self.max_batch_size = hub.max_batch_size

    async def publish_many(self, publications: Sequence[Publication]) -> list[Event]:
        events = await self.hub.publish_many(publications)
        self.left -= len(publications)
        if self.left <= 0:
            self.done.set()
        return events


async def count(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM tidings_outbox")).fetchone()
        return int(row[0]) if row else 0


async def measure(server: str, rows: int, channels: int, batch: int, store: str) -> float:
    name = f"tidings_bench_{uuid.uuid4().hex[:10]}"
    url = urlunsplit(urlsplit(server)._replace(path="/" + name))
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        await apply_ddl(url)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute(
                "INSERT INTO tidings_outbox (channel, type, data)"
                " SELECT 'bench' || (n %% %s), 'tick', jsonb_build_object('n', n, 'at', now())"
                " FROM generate_series(1, %s) AS n",
                (channels, rows),
            )
        hub = Hub(Settings(store=store, history_size=1000, max_batch_size=max(1000, batch)))
        counting = Counting(hub, rows)
        source = PostgresOutbox(f"{url}?batch={batch}&poll=0.05")
        await hub.start()
        try:
            start = time.perf_counter()
            await source.start(counting)
            await asyncio.wait_for(counting.done.wait(), timeout=600)
            # The last batch's delete commits just after its publish: count it in.
            for _ in range(10_000):
                if source.consumed >= rows:
                    break
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - start
            await source.stop()
        finally:
            await hub.stop()
        assert await count(url) == 0, "rows left in the outbox"
        return rows / elapsed
    finally:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--store", default="memory://", help="memory://, sqlite (a temporary file) or redis://…"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = options.store
        if store == "sqlite":
            store = f"sqlite:///{Path(scratch) / 'bench.db'}"
        rate = asyncio.run(
            measure(options.server, options.rows, options.channels, options.batch, store)
        )
    print(
        f"outbox: {options.rows} rows, {options.channels} channels, batch {options.batch}, "
        f"store {options.store}: {rate:,.0f} rows/s consumed"
    )


if __name__ == "__main__":
    main()
