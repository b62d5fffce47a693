"""The SQLite store: history that survives restarts, in one file, standard library only.

``--store sqlite:///path/tidings.db`` keeps each channel's history (and, later, the
webhook outbox) in a SQLite database, so a hub that restarts — even one killed with
SIGKILL — resumes clients exactly where they were. Several hub processes on one machine
may share the file (``--workers``, or two ``tidings serve``): positions are allocated
under SQLite's write lock, so they never collide.

The file gets one *epoch* when it is created. Positions handed out from it stay valid
across restarts; a file that is deleted and created again draws a new epoch, so ids
from the old file are answered with ``reset``, never with the wrong events.

What this module must never do: touch the database from the event loop's thread (every
statement runs on the store's one worker thread), hold a transaction across an
``await``, or hand out an offset outside a ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from tidings.backends.base import NewEvent, StoreLimits
from tidings.core.events import Event, Position, new_epoch
from tidings.core.history import ChannelHistory, HistoryPage
from tidings.errors import BackendError

__all__ = ["SQLiteStore", "SQLiteStoreError"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Marks a file as a tidings database (``PRAGMA application_id``): ASCII "tdgs".
APPLICATION_ID = 0x74646773

# One entry per schema version: the statements that take a database from the version
# before to this one. A new concern (the webhook outbox) gets its own tables in a new
# entry; existing entries never change, because files created by them exist.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Facts about the file itself: its epoch, when it was created.
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        # The newest offset of every channel ever written, so positions continue after
        # its events are evicted or expired.
        "CREATE TABLE channels (channel TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID",
        # Retained history. ``seq`` is the event's offset in its channel; rows are only
        # ever removed from the oldest end, so a channel's rows are contiguous.
        "CREATE TABLE events ("
        " channel TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
        " data TEXT NOT NULL, timestamp TEXT NOT NULL, stored_at REAL NOT NULL,"
        " PRIMARY KEY (channel, seq)) WITHOUT ROWID",
        # Idempotency keys, per channel, with a copy of the event they first stored (the
        # event may leave the history before its key expires).
        "CREATE TABLE idempotency_keys ("
        " channel TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,"
        " type TEXT NOT NULL, data TEXT NOT NULL, timestamp TEXT NOT NULL,"
        " stored_at REAL NOT NULL, PRIMARY KEY (channel, key)) WITHOUT ROWID",
        "CREATE INDEX idempotency_keys_by_age ON idempotency_keys (stored_at)",
    ),
    (
        # Scheduled events (tidings.backends.sqlite_schedules). ``ready`` is when a claim
        # may next take the row: its due time, or the end of the lease a node holds.
        "CREATE TABLE schedules ("
        " key TEXT PRIMARY KEY, channel TEXT NOT NULL, at REAL NOT NULL,"
        " ready REAL NOT NULL, version TEXT NOT NULL, record TEXT NOT NULL) WITHOUT ROWID",
        "CREATE INDEX schedules_by_ready ON schedules (ready)",
        "CREATE INDEX schedules_by_channel ON schedules (channel, at)",
    ),
    (
        # Records in namespaces (tidings.backends.sqlite_records): webhook endpoints and
        # their delivery outbox. ``ready`` is NULL for a record nobody claims.
        "CREATE TABLE records ("
        " namespace TEXT NOT NULL, key TEXT NOT NULL, ready REAL, record BLOB NOT NULL,"
        " PRIMARY KEY (namespace, key)) WITHOUT ROWID",
        "CREATE INDEX records_by_ready ON records (namespace, ready) WHERE ready IS NOT NULL",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

# Pause between attempts to set up a file that another process is setting up, s.
_OPEN_RETRY_S = 0.01
# How long a read waits for the write lock to delete what it found expired, ms.
_PRUNE_WAIT_MS = 50

Synchronous = Literal["normal", "full"]


class SQLiteStoreError(BackendError):
    """The SQLite file cannot be used as a store: no such directory, not a tidings
    database, a newer schema, the file deleted under a running hub, or the store closed.
    Its message names the file: for the operator, never for clients."""


class SQLiteStore:
    """A :class:`~tidings.backends.base.Store` in a SQLite file.

    Every database call runs on one dedicated worker thread, one transaction per call;
    the event loop only awaits results. The file is opened (and created, with its schema
    and epoch, if it does not exist) on that thread. Built outside a running event loop
    (the CLI, a script), the constructor waits for that, so a bad path or file fails at
    once; built inside a loop it never blocks, and the first call reports the failure.

    ``synchronous`` is SQLite's durability level in WAL mode: ``"normal"`` (the default)
    survives the hub process dying at any moment; ``"full"`` also survives the machine
    losing power, at the cost of an fsync per append. ``busy_timeout`` is how long a call
    waits for another process's write transaction on the same file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: StoreLimits | None = None,
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
        # Absolute, so that messages are clear and ping() checks the file that was opened.
        self.path = Path(path).absolute()
        self.limits = limits or StoreLimits()
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        #: The file's epoch; known once the file is open.
        self.epoch = ""
        self._clock = clock
        self._check_path()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._open_error: str | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-sqlite")
        opened = self._executor.submit(self._open)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                opened.result()
            except BaseException:
                self._executor.shutdown(wait=True)
                self._closed = True
                raise

    @classmethod
    def from_url(cls, url: str, limits: StoreLimits | None = None) -> SQLiteStore:
        """The store ``url`` names: ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db``.

        As in SQLAlchemy, what follows ``sqlite:///`` is the path, so a fourth slash makes
        it absolute. Query options: ``synchronous=normal|full``, ``busy_timeout=<s>``.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite":
            raise ValueError(f"not a sqlite:// URL: {url!r}")
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise ValueError(
                f"bad SQLite store URL {url!r}: use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        options: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "synchronous" and value.lower() in ("normal", "full"):
                options[name] = value.lower()
            elif name == "busy_timeout" and _is_seconds(value):
                options[name] = float(value)
            else:
                raise ValueError(
                    f"bad SQLite store URL option {name}={value!r}: "
                    "use synchronous=normal|full or busy_timeout=<seconds>"
                )
        return cls(unquote(parts.path[1:]), limits, **options)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _check_path(self) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            raise SQLiteStoreError(
                f"cannot open the SQLite store {str(self.path)!r}: "
                f"the directory {str(parent)!r} does not exist"
            )
        if self.path.is_dir():
            raise SQLiteStoreError(
                f"cannot open the SQLite store {str(self.path)!r}: it is a directory"
            )

    # -- the worker thread -------------------------------------------------------------

    async def _run(self, job: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise SQLiteStoreError(f"the SQLite store {str(self.path)!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, job, *args)

    def _call(self, job: Callable[..., T], *args: Any) -> T:
        # Runs on the worker. The open was the first job, so it has finished by now.
        if self._conn is None:
            raise SQLiteStoreError(self._open_error or f"{self!r} is closed")
        return job(self._conn, *args)

    def _open(self) -> None:
        where = str(self.path)
        try:
            conn = sqlite3.connect(
                where, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
            )
        except sqlite3.Error as exc:
            self._open_error = f"cannot open the SQLite store {where!r}: {exc}"
            raise SQLiteStoreError(self._open_error) from None
        try:
            self.epoch = self._prepare_patiently(conn)
            stat = os.stat(where)
            self._inode = (stat.st_dev, stat.st_ino)
        except SQLiteStoreError as exc:
            conn.close()
            self._open_error = str(exc)
            raise
        except sqlite3.Error as exc:
            conn.close()
            if exc.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                self._open_error = (
                    f"{where!r} cannot be used as a tidings SQLite store: it is not a SQLite "
                    f"database, or it is damaged ({exc})"
                )
            else:
                self._open_error = f"cannot open the SQLite store {where!r}: {exc}"
            raise SQLiteStoreError(self._open_error) from None
        self._conn = conn

    def _prepare_patiently(self, conn: sqlite3.Connection) -> str:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers "busy"
        # at once, without waiting, when two connections would deadlock on it (several
        # processes opening a new file together): try again until busy_timeout.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return self._prepare(conn)
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorname.startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(_OPEN_RETRY_S)

    def _prepare(self, conn: sqlite3.Connection) -> str:
        """Set the connection up, create or migrate the schema; return the epoch."""
        where = str(self.path)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        # Reading the header first: a file that is not a database fails here.
        version = _pragma(conn, "user_version")
        if version > SCHEMA_VERSION:
            raise SQLiteStoreError(
                f"{where!r} has tidings schema version {version}; this tidings knows up to "
                f"{SCHEMA_VERSION}: it was written by a newer tidings"
            )
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            # Still correct (SQLite's locks serialise writers either way), but readers
            # then wait for writers. Network file systems cannot do WAL.
            log.warning("SQLite store %s: journal mode is %s, not WAL", where, mode)
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        if version < SCHEMA_VERSION:
            self._migrate(conn)
        if _pragma(conn, "application_id") != APPLICATION_ID:
            raise SQLiteStoreError(f"{where!r} is a SQLite database, but not a tidings store")
        row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is None:
            raise SQLiteStoreError(f"{where!r} is a tidings store without an epoch: damaged")
        return str(row[0])

    def _migrate(self, conn: sqlite3.Connection) -> None:
        where = str(self.path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created or migrated the file while we waited.
            version = _pragma(conn, "user_version")
            if version == 0:
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise SQLiteStoreError(
                        f"{where!r} is a SQLite database, but not a tidings store"
                    )
            elif _pragma(conn, "application_id") != APPLICATION_ID:
                raise SQLiteStoreError(f"{where!r} is a SQLite database, but not a tidings store")
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version == 0:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("epoch", new_epoch()), ("created", str(self._clock()))],
                )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if version < SCHEMA_VERSION:
            log.info("SQLite store %s: schema version %d -> %d", where, version, SCHEMA_VERSION)

    # -- the Store interface -----------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[tuple[Event, bool]]:
        """Store ``events`` in one transaction; see :class:`~tidings.backends.base.Store`."""
        if not events:
            return []
        return await self._run(self._append, list(events))

    async def read(
        self, channel: str, *, since: str | None = None, limit: int = 100
    ) -> HistoryPage:
        """A channel's history; see :class:`~tidings.backends.base.Store`."""
        return await self._run(self._read, channel, since, limit)

    async def channels(self, *, limit: int = 1000) -> list[ChannelHistory]:
        """Channels with retained events; see :class:`~tidings.backends.base.Store`."""
        return await self._run(self._channels, limit)

    def _channels(self, conn: sqlite3.Connection, limit: int) -> list[ChannelHistory]:
        conn.execute("BEGIN")
        try:
            now = self._clock()
            found = []
            for channel, last_seq in conn.execute("SELECT channel, last_seq FROM channels"):
                oldest = self._oldest(conn, channel, int(last_seq), now)
                if oldest > last_seq:
                    continue  # all of it is gone
                row = conn.execute(
                    "SELECT timestamp FROM events WHERE channel = ? AND seq = ?",
                    (channel, last_seq),
                ).fetchone()
                if row is not None:
                    found.append(ChannelHistory(channel, int(last_seq) - oldest + 1, row[0]))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        found.sort(key=lambda c: c.last_event_at, reverse=True)
        return found[:limit]

    async def ping(self) -> None:
        """Run a trivial query; raise when the file was deleted or replaced under us."""
        await self._run(self._ping)

    async def close(self) -> None:
        """Close the database and join the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close)
        finally:
            # The worker is idle now (closing was its last job): this join is immediate.
            self._executor.shutdown(wait=True)

    # -- jobs, on the worker -----------------------------------------------------------

    def _append(self, conn: sqlite3.Connection, events: list[NewEvent]) -> list[tuple[Event, bool]]:
        limits = self.limits
        # IMMEDIATE takes the write lock before reading the channels' offsets, so two
        # processes can never both read offset n and both write n + 1.
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()
            key_cutoff = now - limits.idempotency_ttl
            conn.execute("DELETE FROM idempotency_keys WHERE stored_at < ?", (key_cutoff,))
            last: dict[str, int] = {}
            keys: dict[tuple[str, str], Event] = {}
            event_rows: list[tuple[str, int, str, str, str, float]] = []
            key_rows: list[tuple[str, str, int, str, str, str, float]] = []
            stored: list[tuple[Event, bool]] = []
            for new in events:
                channel, key = new.channel, new.idempotency_key
                if key is not None:
                    seen = keys.get((channel, key))
                    if seen is None:
                        seen = self._known_key(conn, channel, key, key_cutoff)
                    if seen is not None:
                        stored.append((seen, False))
                        continue
                seq = last.get(channel)
                if seq is None:
                    seq = _last_seq(conn, channel)
                seq += 1
                last[channel] = seq
                data = orjson.dumps(new.data).decode()
                event_rows.append((channel, seq, new.type, data, new.timestamp, now))
                event = Event(channel, new.type, new.data, new.timestamp, Position(self.epoch, seq))
                if key is not None:
                    keys[(channel, key)] = event
                    key_rows.append((channel, key, seq, new.type, data, new.timestamp, now))
                stored.append((event, True))
            conn.executemany(
                "INSERT INTO events (channel, seq, type, data, timestamp, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                event_rows,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO idempotency_keys"
                " (channel, key, seq, type, data, timestamp, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                key_rows,
            )
            conn.executemany(
                "INSERT INTO channels (channel, last_seq) VALUES (?, ?)"
                " ON CONFLICT (channel) DO UPDATE SET last_seq = excluded.last_seq",
                last.items(),
            )
            for channel, seq in last.items():
                oldest = self._oldest(conn, channel, seq, now)
                conn.execute("DELETE FROM events WHERE channel = ? AND seq < ?", (channel, oldest))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return stored

    def _known_key(
        self, conn: sqlite3.Connection, channel: str, key: str, cutoff: float
    ) -> Event | None:
        row = conn.execute(
            "SELECT seq, type, data, timestamp FROM idempotency_keys"
            " WHERE channel = ? AND key = ? AND stored_at >= ?",
            (channel, key, cutoff),
        ).fetchone()
        if row is None:
            return None
        return self._event(channel, row)

    def _oldest(self, conn: sqlite3.Connection, channel: str, last_seq: int, now: float) -> int:
        """The offset of the channel's oldest retained event (``last_seq + 1``: none).

        Retained: among the newest ``history_size`` and, with ``history_ttl``, from the
        first one young enough on. Always a suffix of the channel, even if the clock
        stepped back, so a reader never sees a hole.
        """
        floor = last_seq - self.limits.history_size
        ttl = self.limits.history_ttl
        if ttl is None:
            row = conn.execute(
                "SELECT min(seq) FROM events WHERE channel = ? AND seq > ?", (channel, floor)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT seq FROM events WHERE channel = ? AND seq > ? AND stored_at >= ?"
                " ORDER BY seq LIMIT 1",
                (channel, floor, now - ttl),
            ).fetchone()
        return last_seq + 1 if row is None or row[0] is None else int(row[0])

    def _read(
        self, conn: sqlite3.Connection, channel: str, since: str | None, limit: int
    ) -> HistoryPage:
        # One read transaction: the channel's offset and its events from one snapshot.
        conn.execute("BEGIN")
        try:
            now = self._clock()
            last_seq = _last_seq(conn, channel)
            oldest = self._oldest(conn, channel, last_seq, now)
            stale = conn.execute(
                "SELECT 1 FROM events WHERE channel = ? AND seq < ? LIMIT 1", (channel, oldest)
            ).fetchone()
            top = Position(self.epoch, last_seq)
            if since is None:
                events = self._rows(conn, channel, oldest, limit, newest=True)
                complete = True
            else:
                position = Position.parse(since)
                if position is None or position.epoch != self.epoch or position.offset > last_seq:
                    events = self._rows(conn, channel, oldest, limit)
                    complete = False
                else:
                    complete = position.offset >= oldest - 1
                    after = max(position.offset + 1, oldest)
                    events = self._rows(conn, channel, after, limit)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if stale is not None:
            self._prune(conn, channel, oldest)
        return HistoryPage(events, complete, top)

    def _rows(
        self,
        conn: sqlite3.Connection,
        channel: str,
        first: int,
        limit: int,
        *,
        newest: bool = False,
    ) -> list[Event]:
        if limit <= 0:  # SQLite reads LIMIT -1 as "no limit"
            return []
        order = "DESC" if newest else "ASC"
        rows = conn.execute(
            "SELECT seq, type, data, timestamp FROM events WHERE channel = ? AND seq >= ?"
            f" ORDER BY seq {order} LIMIT ?",
            (channel, first, limit),
        ).fetchall()
        if newest:
            rows.reverse()
        return [self._event(channel, row) for row in rows]

    def _prune(self, conn: sqlite3.Connection, channel: str, oldest: int) -> None:
        # Reads already hide what expired; this only gives the space back, so it gives up
        # rather than wait long for another process's write lock (the next append of
        # the channel prunes it anyway).
        conn.execute(f"PRAGMA busy_timeout = {_PRUNE_WAIT_MS}")
        try:
            conn.execute("DELETE FROM events WHERE channel = ? AND seq < ?", (channel, oldest))
        except sqlite3.OperationalError as exc:
            log.debug("SQLite store %s: pruning %s deferred: %s", self.path, channel, exc)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def _ping(self, conn: sqlite3.Connection) -> None:
        conn.execute("SELECT 1").fetchone()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise SQLiteStoreError(f"the SQLite store {str(self.path)!r} was deleted") from None
        if (stat.st_dev, stat.st_ino) != self._inode:
            raise SQLiteStoreError(f"the SQLite store {str(self.path)!r} was replaced")

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _event(self, channel: str, row: tuple[int, str, str, str]) -> Event:
        seq, type_, data, timestamp = row
        return Event(channel, type_, orjson.loads(data), timestamp, Position(self.epoch, seq))


def _last_seq(conn: sqlite3.Connection, channel: str) -> int:
    row = conn.execute("SELECT last_seq FROM channels WHERE channel = ?", (channel,)).fetchone()
    return 0 if row is None else int(row[0])


def _is_seconds(text: str) -> bool:
    try:
        return 0 <= float(text) < 3600
    except ValueError:
        return False


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the transaction is gone already: nothing to undo
            log.debug("SQLite rollback failed: %s", exc)
