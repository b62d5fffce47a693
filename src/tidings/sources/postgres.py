"""A transactional outbox in the application's PostgreSQL database, consumed by the hub.

The application inserts ``(channel, type, data)`` rows into the outbox table in the same
transaction as its business change; :class:`PostgresOutbox` turns each committed row into
exactly one event in history, per channel in commit order, and deletes it.

**Order.** A ``bigserial`` id is drawn at insert, not at commit: a transaction that
inserted id 10 may commit after one that inserted id 11, and a consumer that had already
taken 11 would then publish 10 out of order (or, keeping a "last id" cursor, never). The
table's ``BEFORE INSERT`` trigger (:func:`outbox_ddl`) therefore takes a transaction-level
advisory lock on the row's channel and only then draws the id, as Message DB does per
stream category: two transactions writing the same channel are serialised from the first
such insert to commit, so per channel id order *is* commit order, and a visible row's
predecessors on its channel are visible too. Unrelated channels never wait on each other,
and no long transaction elsewhere in the database holds consumption back (as filtering
on ``pg_snapshot_xmin`` would).

**One consumer per table.** ``FOR UPDATE SKIP LOCKED`` lets two consumers take disjoint
batches, but then they publish concurrently and a channel's rows could cross. So each
node asks for a session-level advisory lock on the table (``pg_try_advisory_lock``); the
holder consumes, the others stand by and ask again every ``poll`` seconds. The lock goes
with the holder's connection: when that node dies, another takes over within ``poll``.

**Exactly once into history.** A batch is claimed (``SELECT … ORDER BY id FOR UPDATE SKIP
LOCKED``), published through the hub's ``publish_many`` with the idempotency key
``outbox:<table>:<id>``, and deleted in the same transaction, committed only after the
publish succeeded. A crash between publish and commit leaves the rows; they are published
again and the store returns the events it already holds instead of storing them twice —
provided that happens within the store's idempotency window (300 s per channel).

**Waking.** An ``AFTER INSERT … FOR EACH STATEMENT`` trigger sends ``NOTIFY <table>`` at
commit; the consumer ``LISTEN``\\ s, and polls every ``poll`` seconds for notifications it
missed. When the database is down it reconnects with backoff, logs once per minute, and
never stops the hub.

This module must never decide what a client sees: it only publishes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from tidings.backends import redact_url
from tidings.core.events import Publication
from tidings.errors import TidingsError
from tidings.sources.base import TaskSource

if TYPE_CHECKING:
    import psycopg

    from tidings.sources.base import Sink

__all__ = [
    "DEFAULT_TABLE",
    "OutboxOptions",
    "PostgresOutbox",
    "apply_ddl",
    "outbox_ddl",
    "parse_url",
]

log = logging.getLogger("tidings.sources.postgres")

DEFAULT_TABLE = "tidings_outbox"
DEFAULT_POLL = 1.0
DEFAULT_BATCH = 500
#: Seconds between reconnection attempts grow up to this.
MAX_BACKOFF = 5.0
#: A source that keeps failing says so at most this often.
LOG_INTERVAL = 60.0

# Lowercase names only: they are written into SQL unquoted, and mean what they say there.
_TABLE = re.compile(r"(?:[a-z_][a-z0-9_]{0,39}\.)?[a-z_][a-z0-9_]{0,39}")


@dataclass(frozen=True, slots=True)
class OutboxOptions:
    """What a ``postgres://`` source URL says, its own query options taken out."""

    conninfo: str
    table: str = DEFAULT_TABLE
    poll: float = DEFAULT_POLL
    batch: int = DEFAULT_BATCH


def check_table(table: str) -> str:
    if not _TABLE.fullmatch(table):
        raise ValueError(
            f"outbox table {table!r} is not a lowercase SQL name (like tidings_outbox "
            "or app.tidings_outbox, up to 40 characters each)"
        )
    return table


def parse_url(url: str) -> OutboxOptions:
    """Split ``postgres://…?table=…&poll=…&batch=…`` into tidings' options and the
    connection string libpq gets (with any other options, like ``sslmode``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgres", "postgresql"):
        raise ValueError("a PostgreSQL source URL starts with postgres:// or postgresql://")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    table = check_table(query.pop("table", DEFAULT_TABLE))
    try:
        poll = float(query.pop("poll", DEFAULT_POLL))
        batch = int(query.pop("batch", DEFAULT_BATCH))
    except ValueError:
        raise ValueError("poll is a number of seconds and batch a number of rows") from None
    if not 0.01 <= poll <= 3600:
        raise ValueError("poll must be between 0.01 and 3600 seconds")
    if not 1 <= batch <= 10_000:
        raise ValueError("batch must be between 1 and 10000 rows")
    conninfo = urlunsplit(parts._replace(query=urlencode(query)))
    return OutboxOptions(conninfo, table, poll, batch)


def _names(table: str) -> dict[str, str]:
    schema, _, name = table.rpartition(".")
    prefix = f"{schema}." if schema else ""
    return {
        "table": table,
        "sequence": f"{prefix}{name}_id_seq",
        "order": f"{prefix}{name}_order",
        "notify": f"{prefix}{name}_notify",
        "order_trigger": f"{name}_order",
        "notify_trigger": f"{name}_notify",
    }


def outbox_ddl(table: str = DEFAULT_TABLE) -> str:
    """The table, functions and triggers of an outbox; safe to run again."""
    n = _names(check_table(table))
    return f"""\
-- The tidings outbox: insert rows in the transaction that makes the change they announce.
CREATE TABLE IF NOT EXISTS {n["table"]} (
    id         bigserial   PRIMARY KEY,
    channel    text        NOT NULL,
    type       text        NOT NULL DEFAULT 'message',
    data       jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Per channel, ids follow commit order: a writer takes a lock on the row's channel, held
-- until its transaction ends, before the row gets its id. Writers of other channels
-- never wait.
CREATE OR REPLACE FUNCTION {n["order"]}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('{table}'), hashtext(NEW.channel));
    NEW.id := nextval('{n["sequence"]}');
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS {n["order_trigger"]} ON {n["table"]};
CREATE TRIGGER {n["order_trigger"]} BEFORE INSERT ON {n["table"]}
    FOR EACH ROW EXECUTE FUNCTION {n["order"]}();

-- Wakes the hub when rows commit (LISTEN "{table}"); it also polls.
CREATE OR REPLACE FUNCTION {n["notify"]}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{table}', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS {n["notify_trigger"]} ON {n["table"]};
CREATE TRIGGER {n["notify_trigger"]} AFTER INSERT ON {n["table"]}
    FOR EACH STATEMENT EXECUTE FUNCTION {n["notify"]}();
"""


def _require_psycopg() -> None:
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        raise ImportError("PostgreSQL sources need psycopg: pip install 'tidings[postgres]'")


async def apply_ddl(url: str, table: str = DEFAULT_TABLE) -> None:
    """Create (or update) the outbox ``table`` in the database at ``url``, in one
    transaction."""
    _require_psycopg()
    import psycopg

    options = parse_url(url)
    async with await psycopg.AsyncConnection.connect(options.conninfo, connect_timeout=10) as conn:
        async with conn.transaction():
            await conn.execute(outbox_ddl(table).encode())


def _load(data: str | None) -> Any:
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # jsonb holds numbers orjson refuses (integers over 64 bits); json takes them.
        import json

        return json.loads(data)


class PostgresOutbox(TaskSource):
    task_label = "outbox"
    """Consumes one outbox table; see the module docstring.

    ``url`` is ``postgres://user:password@host:5432/db`` with optional query options
    ``table`` (default ``tidings_outbox``), ``poll`` (seconds, default 1) and ``batch``
    (rows per transaction, default 500; at most the hub's ``max_batch_size``).
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        _require_psycopg()
        self.options = parse_url(url)
        self.name = redact_url(url)
        self.table = self.options.table
        #: Rows published (each an event in history, or a replay of one) and deleted.
        self.consumed = 0
        #: Rows dropped because no publish could ever accept them (logged as errors).
        self.dropped = 0
        self._failing_since: float | None = None
        self._logged_at = 0.0
        self._attempt = 0
        self._password = urlsplit(url).password

    # -- the loop ------------------------------------------------------------------------

    async def _run(self, sink: Sink) -> None:
        import psycopg

        while True:
            try:
                await self._connected(sink)
            except (psycopg.Error, OSError) as exc:
                self._failed(f"{type(exc).__name__}: {self._first_line(exc)}")
            except Exception:
                # A bug must not end consumption for good: say it, and start over.
                self._status = "failing"
                log.exception("outbox %s: consumer failed", self.name)
            self._attempt += 1
            await asyncio.sleep(min(MAX_BACKOFF, 0.1 * 2**self._attempt))

    async def _connected(self, sink: Sink) -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(
            self.options.conninfo,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        async with conn:
            await self._consume(conn, sink)

    def _failed(self, reason: str) -> None:
        now = time.monotonic()
        self._status = "failing"
        if self._failing_since is None:
            self._failing_since = now
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            log.warning(
                "outbox %s: %s (for %.0f s); retrying",
                self.name,
                reason,
                now - self._failing_since,
            )

    def _first_line(self, exc: BaseException) -> str:
        # libpq's messages name the host and user, not the password; make sure of it.
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _recovered(self) -> None:
        self._attempt = 0
        if self._failing_since is not None:
            log.info("outbox %s: reachable again", self.name)
            self._failing_since = None
            self._logged_at = 0.0

    async def _consume(self, conn: psycopg.AsyncConnection[Any], sink: Sink) -> None:
        table = self.table
        await conn.execute(f'LISTEN "{table}"'.encode())
        self._recovered()
        leader = False
        batch = max(1, min(self.options.batch, sink.max_batch_size))
        while True:
            if not leader:
                cursor = await conn.execute(
                    "SELECT pg_try_advisory_lock(hashtext('tidings.consumer'), hashtext(%s))",
                    (table,),
                )
                row = await cursor.fetchone()
                leader = bool(row and row[0])
                self._status = "consuming" if leader else "standby"
                if leader:
                    log.info("outbox %s: consuming table %s", self.name, table)
            if leader:
                try:
                    while await self._batch(conn, sink, batch) == batch:
                        pass
                except TidingsError as exc:
                    # The hub cannot store right now: the rows stay, and are tried again.
                    self._failed(f"publishing failed: {exc.code}")
                    await asyncio.sleep(MAX_BACKOFF)
                    continue
                self._recovered()
                self._status = "consuming"
            # Notifications that came during the batches are drained here too.
            async for _ in conn.notifies(timeout=self.options.poll, stop_after=1):
                pass

    async def _batch(self, conn: psycopg.AsyncConnection[Any], sink: Sink, limit: int) -> int:
        table = self.table
        async with conn.transaction():
            cursor = await conn.execute(
                f"SELECT id, channel, type, data::text FROM {table}"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED".encode(),
                (limit,),
            )
            rows = await cursor.fetchall()
            if not rows:
                return 0
            publications = [
                Publication(
                    channel,
                    event_type,
                    _load(data),
                    f"outbox:{table}:{row_id}",
                )
                for row_id, channel, event_type, data in rows
            ]
            await self._publish(sink, publications)
            await conn.execute(
                f"DELETE FROM {table} WHERE id = ANY(%s)".encode(),
                ([row[0] for row in rows],),
            )
        self.consumed += len(rows)
        return len(rows)

    async def _publish(self, sink: Sink, publications: Sequence[Publication]) -> None:
        try:
            await sink.publish_many(publications)
            return
        except TidingsError as exc:
            if exc.status >= 500:
                raise
        # Something in the batch can never be published (a bad channel name, data over
        # the size limit): publish one by one, and drop what is refused, loudly — a row
        # kept forever would stop its whole table.
        for publication in publications:
            try:
                await sink.publish_many([publication])
            except TidingsError as exc:
                if exc.status >= 500:
                    raise
                self.dropped += 1
                log.error(
                    "outbox %s: row %s dropped, it cannot be published: %s",
                    self.name,
                    (publication.idempotency_key or "").rpartition(":")[2],
                    exc.message,
                )
