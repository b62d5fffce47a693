"""Records in the SQLite store's file (webhook endpoints and their outbox): they survive
restarts and ``kill -9`` with the history. Statements run on the store's worker thread;
claims take the write lock, so processes sharing the file never claim the same record."""

from __future__ import annotations

import sqlite3

from tidings.backends.base import records_full
from tidings.backends.sqlite import SQLiteStore, _rollback

__all__ = ["SQLiteRecords"]


class SQLiteRecords:
    """A :class:`~tidings.backends.base.Records` in the ``records`` table of a store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def put(
        self,
        namespace: str,
        key: str,
        record: bytes,
        *,
        ready: float | None,
        if_absent: bool = False,
        limit: int | None = None,
    ) -> bool:
        return await self.store._run(_put, namespace, key, record, ready, if_absent, limit)

    async def get(self, namespace: str, key: str) -> bytes | None:
        return await self.store._run(_get, namespace, key)

    async def delete(self, namespace: str, key: str) -> bool:
        return await self.store._run(_delete, namespace, key)

    async def drop(self, namespace: str) -> None:
        await self.store._run(_drop, namespace)

    async def newest(self, namespace: str, *, limit: int = 1000) -> list[bytes]:
        return await self.store._run(_list, namespace, limit)

    async def claim(self, namespace: str, now: float, *, lease: float, limit: int) -> list[bytes]:
        return await self.store._run(_claim, namespace, now, lease, limit)

    async def ready_count(self, namespace: str) -> int:
        return await self.store._run(_ready_count, namespace)

    async def close(self) -> None:
        return None  # the store owns the file


def _put(
    conn: sqlite3.Connection,
    namespace: str,
    key: str,
    record: bytes,
    ready: float | None,
    if_absent: bool,
    limit: int | None,
) -> bool:
    conn.execute("BEGIN IMMEDIATE")
    try:
        exists = conn.execute(
            "SELECT 1 FROM records WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        if exists is not None and if_absent:
            conn.execute("COMMIT")
            return False
        if exists is None and limit is not None and _ready_count(conn, namespace) >= limit:
            raise records_full(limit)
        conn.execute(
            "INSERT OR REPLACE INTO records (namespace, key, ready, record) VALUES (?, ?, ?, ?)",
            (namespace, key, ready, record),
        )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return True


def _get(conn: sqlite3.Connection, namespace: str, key: str) -> bytes | None:
    row = conn.execute(
        "SELECT record FROM records WHERE namespace = ? AND key = ?", (namespace, key)
    ).fetchone()
    return None if row is None else bytes(row[0])


def _delete(conn: sqlite3.Connection, namespace: str, key: str) -> bool:
    cursor = conn.execute("DELETE FROM records WHERE namespace = ? AND key = ?", (namespace, key))
    return cursor.rowcount > 0


def _drop(conn: sqlite3.Connection, namespace: str) -> None:
    conn.execute("DELETE FROM records WHERE namespace = ?", (namespace,))


def _list(conn: sqlite3.Connection, namespace: str, limit: int) -> list[bytes]:
    rows = conn.execute(
        "SELECT record FROM records WHERE namespace = ? ORDER BY key DESC LIMIT ?",
        (namespace, limit),
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def _claim(
    conn: sqlite3.Connection, namespace: str, now: float, lease: float, limit: int
) -> list[bytes]:
    probe = "SELECT 1 FROM records WHERE namespace = ? AND ready <= ? LIMIT 1"
    if conn.execute(probe, (namespace, now)).fetchone() is None:
        return []  # most wake-ups find nothing: no write lock for them
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT key, record FROM records WHERE namespace = ? AND ready <= ?"
            " ORDER BY ready, key LIMIT ?",
            (namespace, now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE records SET ready = ? WHERE namespace = ? AND key = ?",
            [(now + lease, namespace, key) for key, _ in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return [bytes(record) for _, record in rows]


def _ready_count(conn: sqlite3.Connection, namespace: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM records WHERE namespace = ? AND ready IS NOT NULL", (namespace,)
    ).fetchone()
    return int(row[0])
