"""Video-recognition event monitor: a FastAPI app with a tidings hub embedded.

A recognition pipeline reports detections to ``POST /api/events``. Each one is stored in
SQLite first, then broadcast to live dashboards through the hub on channel ``events``.
Broadcasting is best effort: it never makes creating an event fail or wait. A dashboard
that was away asks ``GET /api/events?since_id=<last id it saw>`` for what it missed, then
follows ``/ws/events``, where each message is ``{"type": "event", "data": <the event>}``.

Run it from the repository root with either of::

    uvicorn examples.camera_monitor.app:app
    python examples/camera_monitor/app.py

Environment (read here, at the edge, and nowhere else):
``MONITOR_DB`` (SQLite file; default ``tidings-monitor.db`` in the temp directory),
``MONITOR_ALLOWED_ORIGINS`` (comma-separated browser origins, besides the app's own, whose
pages may open live streams; unset, pages on localhost may, for development),
``MONITOR_HOST`` / ``MONITOR_PORT`` (for ``python …/app.py``; default 127.0.0.1:8000).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from tidings import Hub, Settings

log = logging.getLogger("monitor")

CHANNEL = "events"

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    details TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""


class EventIn(BaseModel):
    """A detection as the recognition pipeline reports it."""

    camera_id: str = Field(min_length=1, max_length=100)
    label: str = Field(min_length=1, max_length=100)
    confidence: float = Field(ge=0, le=1)
    details: dict[str, Any] = Field(default_factory=dict)


class EventManager:
    """Stores detections, then tells live clients about them.

    The database is the record; the hub only carries news. ``hub`` may be ``None``
    (broadcasting switched off).
    """

    def __init__(self, db_path: str, hub: Hub | None = None) -> None:
        self.db_path = db_path
        self.hub = hub

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: routes run in FastAPI's worker threads.
        with closing(sqlite3.connect(self.db_path, timeout=10)) as db, db:
            db.row_factory = sqlite3.Row
            yield db

    def open(self) -> None:
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def create_event(
        self,
        camera_id: str,
        label: str,
        confidence: float,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Persist one detection and return it; then broadcast it, best effort."""
        created_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        details = details or {}
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO events (camera_id, label, confidence, details, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (camera_id, label, confidence, json.dumps(details), created_at),
            )
            event_id = cursor.lastrowid
        event = {
            "id": event_id,
            "camera_id": camera_id,
            "label": label,
            "confidence": confidence,
            "details": details,
            "created_at": created_at,
        }
        self._broadcast(event)
        return event

    def _broadcast(self, event: dict[str, Any]) -> None:
        if self.hub is None:
            return
        # publish_nowait is fire-and-forget and safe from this worker thread; it logs and
        # counts its own failures. The guard is for anything else: the event is stored.
        try:
            self.hub.publish_nowait(CHANNEL, "event.created", event)
        except Exception:
            log.exception("broadcast of event %s failed", event["id"])

    def events_since(self, since_id: int, limit: int) -> list[dict[str, Any]]:
        """Events with an id above ``since_id``, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (since_id, limit)
            ).fetchall()
        return [{**dict(row), "details": json.loads(row["details"])} for row in rows]


def create_app(db_path: str | None = None, settings: Settings | None = None) -> FastAPI:
    """The monitor app: its REST API, and the hub mounted at ``/realtime``."""
    path = db_path or os.environ.get("MONITOR_DB") or default_db_path()
    if settings is None:
        origins = os.environ.get("MONITOR_ALLOWED_ORIGINS", "").split(",")
        settings = Settings(allowed_origins=tuple(o.strip() for o in origins if o.strip()))
    hub = Hub(settings)
    manager = EventManager(path, hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager.open()
        async with hub:
            yield

    app = FastAPI(title="Video-recognition event monitor", lifespan=lifespan)
    app.state.hub = hub
    app.state.events = manager

    @app.post("/api/events", status_code=201)
    def create_event(body: EventIn) -> dict[str, Any]:
        return manager.create_event(body.camera_id, body.label, body.confidence, body.details)

    @app.get("/api/events")
    def list_events(
        since_id: int = Query(0, ge=0, description="last event id the client has seen"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        return {"events": manager.events_since(since_id, limit)}

    # The dashboards' socket, at the app's own path: every client follows `events`, and
    # each message carries the app's event itself at `data` (message="data").
    app.routes.append(hub.websocket_route("/ws/events", channels=[CHANNEL], message="data"))
    # The hub's own endpoints (SSE, history, health, its dashboard) under /realtime.
    app.mount("/realtime", hub.asgi_app())
    return app


def default_db_path() -> str:
    return os.path.join(tempfile.gettempdir(), "tidings-monitor.db")


app = create_app()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        host=os.environ.get("MONITOR_HOST", "127.0.0.1"),
        port=int(os.environ.get("MONITOR_PORT", "8000")),
        # Open event streams never end by themselves: give them a bounded drain.
        timeout_graceful_shutdown=3,
    )
