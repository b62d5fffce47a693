"""After-school check-in: supervisors follow live what happens in their groups.

A FastAPI app with a tidings hub embedded (SPEC §11, scenario 5). Staff endpoints check
students in and out and start and end activities; each action is one event on the
channel ``group:<id>`` of the student's or activity's group. A supervisor's browser
opens one SSE stream; the connect hook reads the supervisor's *active* groups from the
permissions table at that moment, subscribes the stream to them and allows nothing else.

Events carry display-level fields only: the builders below take a whole database row
and keep a first name and an initial, the group and the time; the event types are
registered with models that forbid any other field, so the hub refuses an event that
carries more, whoever publishes it.

Run it from the repository root::

    python examples/checkin_groups/app.py

Environment (read here, at the edge, and nowhere else): ``CHECKIN_DB`` (SQLite file;
default ``tidings-checkin.db`` in the temp directory), ``CHECKIN_TOKEN_TTL`` (seconds a
supervisor's stream token lives; default 600), ``CHECKIN_HOST`` / ``CHECKIN_PORT``
(default 127.0.0.1:8000), and the hub's own ``TIDINGS_*`` settings (``TIDINGS_JWT_SECRET``;
unset, a random secret is made at start: the app mints every token itself).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from tidings import Hub, Identity, Settings
from tidings.auth.tokens import mint_token
from tidings.settings import load_settings

PAGE = Path(__file__).with_name("page.html")

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS supervisor_groups (  -- the permissions table
    supervisor_id TEXT NOT NULL,
    group_id INTEGER NOT NULL REFERENCES groups (id),
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (supervisor_id, group_id)
);
CREATE TABLE IF NOT EXISTS students (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups (id),
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    address TEXT NOT NULL,
    guardian_name TEXT NOT NULL,
    guardian_phone TEXT NOT NULL,
    checked_in_at TEXT
);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL REFERENCES groups (id),
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT
);
"""

# Demo data, written once into an empty database. Ann supervises the Robins (and the
# Foxes, but not this term: inactive), Ben the Otters, Cleo both Robins and Otters.
DEMO_GROUPS = [(1, "Robins"), (2, "Otters"), (3, "Foxes")]
DEMO_PERMISSIONS = [("ann", 1, 1), ("ann", 3, 0), ("ben", 2, 1), ("cleo", 1, 1), ("cleo", 2, 1)]
DEMO_STUDENTS = [
    (1, 1, "Mia", "Lindqvist", "2016-03-14", "12 Elm Road", "Eva Lindqvist", "+46 70 111 22 33"),
    (2, 1, "Noah", "Berg", "2015-11-02", "4 Mill Lane", "Per Berg", "+46 70 444 55 66"),
    (3, 2, "Liam", "Okafor", "2016-07-21", "9 Harbour St", "Ada Okafor", "+46 70 777 88 99"),
    (4, 3, "Zoe", "Haddad", "2017-01-30", "2 Birch Way", "Sami Haddad", "+46 70 123 45 67"),
]

STUDENT_EVENTS = ("student_checkin", "student_checkout")
ACTIVITY_EVENTS = ("activity_start", "activity_end")


class StudentNotice(BaseModel):
    """What a supervisor's screen shows of a check-in or check-out: no more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student_id: int
    student: str = Field(description="first name and last initial, e.g. 'Mia L.'")
    group: int
    group_name: str
    time: str


class ActivityNotice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    activity_id: int
    activity: str
    group: int
    group_name: str
    time: str


def display_name(first_name: str, last_name: str) -> str:
    """'Mia Lindqvist' -> 'Mia L.': enough to recognise a child in the room."""
    initial = last_name.strip()[:1].upper()
    return f"{first_name.strip()} {initial}." if initial else first_name.strip()


def student_notice(row: Mapping[str, Any], time: str) -> dict[str, Any]:
    """An event's data from a whole student row (with its group's name): display
    fields only, whatever else the row holds (birth date, address, guardian)."""
    return StudentNotice(
        student_id=row["id"],
        student=display_name(row["first_name"], row["last_name"]),
        group=row["group_id"],
        group_name=row["group_name"],
        time=time,
    ).model_dump()


def activity_notice(row: Mapping[str, Any], time: str) -> dict[str, Any]:
    return ActivityNotice(
        activity_id=row["id"],
        activity=row["name"],
        group=row["group_id"],
        group_name=row["group_name"],
        time=time,
    ).model_dump()


def group_channel(group_id: int) -> str:
    return f"group:{group_id}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class School:
    """The application's database: groups, permissions, students, activities."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: calls run in worker threads.
        with closing(sqlite3.connect(self.db_path, timeout=10)) as db, db:
            db.row_factory = sqlite3.Row
            yield db

    def open(self) -> None:
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            if db.execute("SELECT COUNT(*) FROM groups").fetchone()[0] == 0:
                db.executemany("INSERT INTO groups VALUES (?, ?)", DEMO_GROUPS)
                db.executemany("INSERT INTO supervisor_groups VALUES (?, ?, ?)", DEMO_PERMISSIONS)
                db.executemany(
                    "INSERT INTO students VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)", DEMO_STUDENTS
                )

    def active_groups(self, supervisor_id: str) -> list[int]:
        with self._db() as db:
            rows = db.execute(
                "SELECT group_id FROM supervisor_groups"
                " WHERE supervisor_id = ? AND active ORDER BY group_id",
                (supervisor_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def set_active(self, supervisor_id: str, group_id: int, active: bool) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO supervisor_groups VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
                " SET active = excluded.active",
                (supervisor_id, group_id, int(active)),
            )

    def check(self, student_id: int, *, checking_in: bool, at: str) -> dict[str, Any] | None:
        """Record a check-in (or check-out); the whole student row, or None."""
        with self._db() as db:
            db.execute(
                "UPDATE students SET checked_in_at = ? WHERE id = ?",
                (at if checking_in else None, student_id),
            )
            row = db.execute(
                "SELECT s.*, g.name AS group_name FROM students s"
                " JOIN groups g ON g.id = s.group_id WHERE s.id = ?",
                (student_id,),
            ).fetchone()
        return dict(row) if row else None

    def start_activity(self, group_id: int, name: str, at: str) -> dict[str, Any] | None:
        with self._db() as db:
            group = db.execute("SELECT name FROM groups WHERE id = ?", (group_id,)).fetchone()
            if group is None:
                return None
            cursor = db.execute(
                "INSERT INTO activities (group_id, name, started_at) VALUES (?, ?, ?)",
                (group_id, name, at),
            )
        return {"id": cursor.lastrowid, "group_id": group_id, "name": name, "group_name": group[0]}

    def end_activity(self, activity_id: int, at: str) -> dict[str, Any] | None:
        with self._db() as db:
            db.execute("UPDATE activities SET ended_at = ? WHERE id = ?", (at, activity_id))
            row = db.execute(
                "SELECT a.id, a.group_id, a.name, g.name AS group_name FROM activities a"
                " JOIN groups g ON g.id = a.group_id WHERE a.id = ?",
                (activity_id,),
            ).fetchone()
        return dict(row) if row else None


class ActivityIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


def create_app(
    db_path: str | None = None,
    settings: Settings | None = None,
    token_ttl: float | None = None,
) -> FastAPI:
    """The check-in app: staff endpoints, the supervisor page, the hub at ``/realtime``."""
    school = School(db_path or os.environ.get("CHECKIN_DB") or default_db_path())
    ttl = token_ttl or float(os.environ.get("CHECKIN_TOKEN_TTL", "600"))
    if settings is None:
        settings = load_settings(environ=os.environ)
        if settings.jwt_secret is None:  # nobody else mints tokens: any secret will do
            settings = load_settings(environ=os.environ, jwt_secret=secrets.token_urlsafe(32))
    secret = settings.jwt_secret
    if secret is None:
        raise ValueError("the check-in app mints tokens: its settings need a jwt_secret")
    hub = Hub(settings)
    # Whoever publishes (these endpoints, the HTTP API, a script), the hub refuses an
    # event of these types that carries any field beyond the display ones.
    for name in STUDENT_EVENTS:
        hub.event_type(name, StudentNotice, channels=["group:*"])
    for name in ACTIVITY_EVENTS:
        hub.event_type(name, ActivityNotice, channels=["group:*"])

    async def supervisor_groups(identity: Identity, request: Mapping[str, Any]) -> dict[str, Any]:
        """The connect hook: the supervisor's active groups, read at every connect."""
        groups = await asyncio.to_thread(school.active_groups, identity.client_id or "")
        if not groups:
            return {"allow": False, "reason": "no active group"}
        channels = [group_channel(group) for group in groups]
        return {"channels": channels, "allowed": channels}

    hub.set_connect_hook(supervisor_groups)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(school.open)
        async with hub:
            yield

    app = FastAPI(title="After-school check-in", lifespan=lifespan)
    app.state.hub = hub
    app.state.school = school

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/api/token")
    async def token(supervisor: str = Query(min_length=1, max_length=100)) -> dict[str, Any]:
        """A stream token for ``supervisor``, and the groups it will follow.

        A demo login: a real application takes the supervisor from its own session
        (cookie), never from the query."""
        groups = await asyncio.to_thread(school.active_groups, supervisor)
        if not groups:
            raise HTTPException(403, "not a supervisor of any active group")
        # No channel rights in the token: the connect hook decides them at each connect.
        minted = mint_token(secret.get_secret_value(), sub=supervisor, ttl=ttl)
        return {"token": minted, "expires_in": ttl, "groups": groups}

    async def publish_student(student_id: int, *, checking_in: bool) -> dict[str, Any]:
        at = now()
        row = await asyncio.to_thread(school.check, student_id, checking_in=checking_in, at=at)
        if row is None:
            raise HTTPException(404, "no such student")
        kind = "student_checkin" if checking_in else "student_checkout"
        event = await hub.publish(group_channel(row["group_id"]), kind, student_notice(row, at))
        return event.to_dict()

    @app.post("/api/students/{student_id}/checkin")
    async def checkin(student_id: int) -> dict[str, Any]:
        return await publish_student(student_id, checking_in=True)

    @app.post("/api/students/{student_id}/checkout")
    async def checkout(student_id: int) -> dict[str, Any]:
        return await publish_student(student_id, checking_in=False)

    @app.post("/api/groups/{group_id}/activities")
    async def start_activity(group_id: int, body: ActivityIn) -> dict[str, Any]:
        at = now()
        row = await asyncio.to_thread(school.start_activity, group_id, body.name, at)
        if row is None:
            raise HTTPException(404, "no such group")
        event = await hub.publish(
            group_channel(group_id), "activity_start", activity_notice(row, at)
        )
        return event.to_dict()

    @app.post("/api/activities/{activity_id}/end")
    async def end_activity(activity_id: int) -> dict[str, Any]:
        at = now()
        row = await asyncio.to_thread(school.end_activity, activity_id, at)
        if row is None:
            raise HTTPException(404, "no such activity")
        channel = group_channel(row["group_id"])
        event = await hub.publish(channel, "activity_end", activity_notice(row, at))
        return event.to_dict()

    # SSE at /realtime/api/v1/events, WebSocket at /realtime/ws, the JS client at
    # /realtime/static/tidings.js.
    app.mount("/realtime", hub.asgi_app())
    return app


def default_db_path() -> str:
    return os.path.join(tempfile.gettempdir(), "tidings-checkin.db")


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        create_app(),
        host=os.environ.get("CHECKIN_HOST", "127.0.0.1"),
        port=int(os.environ.get("CHECKIN_PORT", "8000")),
        # Open event streams never end by themselves: give them a bounded drain.
        timeout_graceful_shutdown=3,
    )
