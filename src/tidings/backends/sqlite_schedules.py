"""Scheduled events in the SQLite store's file: they survive restarts with its history.

Every statement runs on the store's one worker thread (``SQLiteStore._run``), one
transaction per call; claims take the write lock (``BEGIN IMMEDIATE``), so two
processes sharing the file never claim the same row.
"""

from __future__ import annotations

import sqlite3

from tidings.backends.base import schedules_full
from tidings.backends.sqlite import SQLiteStore, _rollback
from tidings.core.scheduled import Scheduled

__all__ = ["SQLiteSchedules"]


class SQLiteSchedules:
    """A :class:`~tidings.backends.base.Schedules` in the ``schedules`` table of a store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def put(self, entry: Scheduled, *, limit: int) -> Scheduled | None:
        return await self.store._run(_put, entry, limit)

    async def get(self, key: str) -> Scheduled | None:
        return await self.store._run(_get, key)

    async def cancel(self, key: str) -> Scheduled | None:
        return await self.store._run(_cancel, key)

    async def pending(self, *, channel: str | None = None, limit: int = 1000) -> list[Scheduled]:
        return await self.store._run(_pending, channel, limit)

    async def claim(self, now: float, *, lease: float, limit: int) -> list[Scheduled]:
        return await self.store._run(_claim, now, lease, limit)

    async def done(self, entry: Scheduled) -> None:
        await self.store._run(_done, entry)

    async def next_due(self) -> float | None:
        return await self.store._run(_next_due)

    async def count(self) -> int:
        return await self.store._run(_count)

    async def close(self) -> None:
        return None  # the store owns the file


def _write(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _put(conn: sqlite3.Connection, entry: Scheduled, limit: int) -> Scheduled | None:
    _write(conn)
    try:
        row = conn.execute("SELECT record FROM schedules WHERE key = ?", (entry.key,)).fetchone()
        if row is None and conn.execute("SELECT count(*) FROM schedules").fetchone()[0] >= limit:
            raise schedules_full(limit)
        conn.execute(
            "INSERT OR REPLACE INTO schedules (key, channel, at, ready, version, record)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (entry.key, entry.channel, entry.at, entry.at, entry.version, entry.dumps()),
        )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return None if row is None else Scheduled.loads(row[0])


def _get(conn: sqlite3.Connection, key: str) -> Scheduled | None:
    row = conn.execute("SELECT record FROM schedules WHERE key = ?", (key,)).fetchone()
    return None if row is None else Scheduled.loads(row[0])


def _cancel(conn: sqlite3.Connection, key: str) -> Scheduled | None:
    row = conn.execute("DELETE FROM schedules WHERE key = ? RETURNING record", (key,)).fetchone()
    return None if row is None else Scheduled.loads(row[0])


def _pending(conn: sqlite3.Connection, channel: str | None, limit: int) -> list[Scheduled]:
    if channel is None:
        rows = conn.execute(
            "SELECT record FROM schedules ORDER BY at, key LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT record FROM schedules WHERE channel = ? ORDER BY at, key LIMIT ?",
            (channel, limit),
        ).fetchall()
    return [Scheduled.loads(row[0]) for row in rows]


def _claim(conn: sqlite3.Connection, now: float, lease: float, limit: int) -> list[Scheduled]:
    # A cheap look first: most wake-ups find nothing due, and need no write lock.
    if conn.execute("SELECT 1 FROM schedules WHERE ready <= ? LIMIT 1", (now,)).fetchone() is None:
        return []
    _write(conn)
    try:
        rows = conn.execute(
            "SELECT key, record FROM schedules WHERE ready <= ? ORDER BY ready, key LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE schedules SET ready = ? WHERE key = ?", [(now + lease, key) for key, _ in rows]
        )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return [Scheduled.loads(record) for _, record in rows]


def _done(conn: sqlite3.Connection, entry: Scheduled) -> None:
    conn.execute("DELETE FROM schedules WHERE key = ? AND version = ?", (entry.key, entry.version))


def _next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(ready) FROM schedules").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM schedules").fetchone()[0])
