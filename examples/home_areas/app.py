"""Home-automation area manager: a FastAPI app that tells its paired clients about areas.

A home has areas (rooms, zones) and paired clients (phones, wall panels). Each client
has the areas it controls. The app keeps both in SQLite and reaches clients three ways:

- ``notify_client(id, …)``: one client (``pairing_completed`` for the client that started
  a pairing);
- ``notify_clients_with_area(area, …)``: the clients that have that area, found in the
  app's own database, then one ``hub.publish_to_clients`` (``area_updated``,
  ``area_enabled``, ``area_disabled``, ``area_removed``);
- ``notify_all_clients(…)``: the automatic channel ``broadcast`` that every connection
  joins (``area_added``).

Clients connect to ``/realtime/ws?token=…`` (or SSE at ``/realtime/api/v1/events``),
with a token from ``POST /api/clients``; they get the hub's ``connected`` welcome. Revoking
a client delivers ``token_revoked`` and then closes its connections (close code 4004);
its token is refused from then on. At most 10 new connections per minute per IP.

Run it from the repository root with ``python examples/home_areas/app.py``.

Environment (read here, at the edge, and nowhere else): ``HOME_AREAS_DB`` (SQLite file;
default ``tidings-home-areas.db`` in the temp directory), ``HOME_AREAS_JWT_SECRET``
(default: a random one per start, so tokens die with the process),
``HOME_AREAS_HOST`` / ``HOME_AREAS_PORT`` (default 127.0.0.1:8000).

The API is unauthenticated to stay short: a real app puts its own login in front of it.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from tidings import Hub, Settings
from tidings.auth.tokens import mint_token
from tidings.errors import TidingsError

log = logging.getLogger("home_areas")

BROADCAST = "broadcast"
CONNECTIONS_PER_MINUTE = 10
TOKEN_TTL = 3600
PAGE = Path(__file__).with_name("client.html")

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS areas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS client_areas (
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    area_id INTEGER NOT NULL REFERENCES areas(id) ON DELETE CASCADE,
    PRIMARY KEY (client_id, area_id)
);
CREATE TABLE IF NOT EXISTS pairings (code TEXT PRIMARY KEY, client_id TEXT NOT NULL);
"""

ClientId = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")


class ClientIn(BaseModel):
    client_id: str = ClientId


class AreaIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    client_ids: list[str] = Field(default_factory=list, max_length=1000)


class AreaPatch(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class PairingDone(BaseModel):
    client_id: str = ClientId
    area_ids: list[int] = Field(default_factory=list, max_length=1000)


class Home:
    """The app's database, and the three ways of telling clients about it.

    The database is the record: a change is committed before anyone is told, and a
    failed notification is logged, never turned into a failed request.
    """

    def __init__(self, db_path: str, hub: Hub) -> None:
        self.db_path = db_path
        self.hub = hub

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.db_path, timeout=10)) as db, db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            yield db

    def open(self) -> None:
        with self.db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    # -- the three ways to reach clients ------------------------------------------------

    async def notify_client(self, client_id: str, type_: str, data: Any) -> None:
        await self._notify(self.hub.publish_to_clients([client_id], type_, data))

    async def notify_clients_with_area(self, area_id: int, type_: str, data: Any) -> None:
        with self.db() as db:
            rows = db.execute(
                "SELECT client_id FROM client_areas WHERE area_id = ? ORDER BY client_id",
                (area_id,),
            ).fetchall()
        await self.notify_clients([row[0] for row in rows], type_, data)

    async def notify_clients(self, client_ids: list[str], type_: str, data: Any) -> None:
        if client_ids:
            await self._notify(self.hub.publish_to_clients(client_ids, type_, data))

    async def notify_all_clients(self, type_: str, data: Any) -> None:
        await self._notify(self.hub.publish(BROADCAST, type_, data))

    async def _notify(self, publishing: Any) -> None:
        try:
            await publishing
        except TidingsError:
            log.exception("notification failed; the change itself is committed")

    # -- areas ---------------------------------------------------------------------------

    def area(self, area_id: int) -> dict[str, Any]:
        with self.db() as db:
            row = db.execute("SELECT * FROM areas WHERE id = ?", (area_id,)).fetchone()
            if row is None:
                raise HTTPException(404, f"no area {area_id}")
            clients = db.execute(
                "SELECT client_id FROM client_areas WHERE area_id = ? ORDER BY client_id",
                (area_id,),
            ).fetchall()
        return {
            "id": row["id"],
            "name": row["name"],
            "enabled": bool(row["enabled"]),
            "client_ids": [c[0] for c in clients],
        }


def create_app(
    db_path: str | None = None,
    jwt_secret: str | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The area manager: its REST API, its test page at ``/``, the hub at ``/realtime``."""
    path = db_path or os.environ.get("HOME_AREAS_DB") or default_db_path()
    secret = jwt_secret or os.environ.get("HOME_AREAS_JWT_SECRET") or secrets.token_urlsafe(32)
    hub = Hub(
        settings
        or Settings(
            jwt_secret=secret,
            auto_channels=(BROADCAST,),  # notify_all_clients: one publish reaches everyone
            connection_rate=CONNECTIONS_PER_MINUTE,  # new streams per IP per minute
        )
    )
    home = Home(path, hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        home.open()
        async with hub:
            yield

    def token_for(client_id: str) -> str:
        # Its personal channel needs no pattern; `broadcast` is joined at connect anyway,
        # the pattern lets a browser client also subscribe to it by name (and resume it).
        return mint_token(secret, sub=client_id, ttl=TOKEN_TTL, channels=[BROADCAST])

    app = FastAPI(title="Home-automation area manager", lifespan=lifespan)
    app.state.hub = hub
    app.state.home = home

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    # -- clients -------------------------------------------------------------------------

    @app.post("/api/clients", status_code=201)
    def register_client(body: ClientIn) -> dict[str, Any]:
        """Register a client (idempotent) and give it a token for the hub."""
        with home.db() as db:
            db.execute("INSERT OR IGNORE INTO clients (id) VALUES (?)", (body.client_id,))
        return {"client_id": body.client_id, "token": token_for(body.client_id)}

    @app.delete("/api/clients/{client_id}", status_code=204)
    async def revoke_client(client_id: str) -> None:
        """Unpair a client: it gets ``token_revoked``, then every connection of it closes,
        and its tokens are refused until they expire."""
        with home.db() as db:
            if db.execute("DELETE FROM clients WHERE id = ?", (client_id,)).rowcount == 0:
                raise HTTPException(404, f"no client {client_id}")
        await hub.disconnect_client(
            client_id,
            "token_revoked",
            revoke=True,
            event=("token_revoked", {"client_id": client_id, "reason": "unpaired"}),
        )

    # -- pairing ---------------------------------------------------------------------------

    @app.post("/api/pairings", status_code=201)
    def start_pairing(body: ClientIn) -> dict[str, str]:
        """A paired client (``client_id``) shows a code for a new device to enter."""
        code = secrets.token_hex(3)
        with home.db() as db:
            db.execute("INSERT INTO pairings VALUES (?, ?)", (code, body.client_id))
        return {"code": code}

    @app.post("/api/pairings/{code}/complete", status_code=201)
    async def complete_pairing(code: str, body: PairingDone) -> dict[str, Any]:
        """The new device entered the code: it is registered with its areas and gets a
        token; the client that showed the code gets ``pairing_completed``."""
        with home.db() as db:
            row = db.execute("DELETE FROM pairings WHERE code = ? RETURNING client_id", (code,))
            pairer = row.fetchone()
            if pairer is None:
                raise HTTPException(404, "unknown or used pairing code")
            db.execute("INSERT OR IGNORE INTO clients (id) VALUES (?)", (body.client_id,))
            db.executemany(
                "INSERT OR IGNORE INTO client_areas SELECT ?, id FROM areas WHERE id = ?",
                [(body.client_id, area_id) for area_id in body.area_ids],
            )
        await home.notify_client(
            pairer[0], "pairing_completed", {"code": code, "client_id": body.client_id}
        )
        return {"client_id": body.client_id, "token": token_for(body.client_id)}

    # -- areas -----------------------------------------------------------------------------

    @app.get("/api/areas")
    def list_areas() -> dict[str, Any]:
        with home.db() as db:
            ids = [row[0] for row in db.execute("SELECT id FROM areas ORDER BY id")]
        return {"areas": [home.area(area_id) for area_id in ids]}

    @app.get("/api/areas/{area_id}")
    def get_area(area_id: int) -> dict[str, Any]:
        return home.area(area_id)

    @app.post("/api/areas", status_code=201)
    async def add_area(body: AreaIn) -> dict[str, Any]:
        with home.db() as db:
            area_id = db.execute("INSERT INTO areas (name) VALUES (?)", (body.name,)).lastrowid
            db.executemany(
                "INSERT OR IGNORE INTO client_areas SELECT id, ? FROM clients WHERE id = ?",
                [(area_id, client_id) for client_id in body.client_ids],
            )
        assert area_id is not None
        area = home.area(area_id)
        await home.notify_all_clients("area_added", area)
        return area

    @app.patch("/api/areas/{area_id}")
    async def update_area(area_id: int, body: AreaPatch) -> dict[str, Any]:
        home.area(area_id)  # 404 first
        with home.db() as db:
            db.execute("UPDATE areas SET name = ? WHERE id = ?", (body.name, area_id))
        area = home.area(area_id)
        await home.notify_clients_with_area(area_id, "area_updated", area)
        return area

    @app.post("/api/areas/{area_id}/enable")
    async def enable_area(area_id: int) -> dict[str, Any]:
        return await set_enabled(area_id, True)

    @app.post("/api/areas/{area_id}/disable")
    async def disable_area(area_id: int) -> dict[str, Any]:
        return await set_enabled(area_id, False)

    async def set_enabled(area_id: int, enabled: bool) -> dict[str, Any]:
        home.area(area_id)
        with home.db() as db:
            db.execute("UPDATE areas SET enabled = ? WHERE id = ?", (enabled, area_id))
        area = home.area(area_id)
        kind = "area_enabled" if enabled else "area_disabled"
        await home.notify_clients_with_area(area_id, kind, area)
        return area

    @app.delete("/api/areas/{area_id}", status_code=204)
    async def remove_area(area_id: int) -> None:
        # Who had it is known only before the delete cascades.
        had_it = home.area(area_id)["client_ids"]
        with home.db() as db:
            db.execute("DELETE FROM areas WHERE id = ?", (area_id,))
        await home.notify_clients(had_it, "area_removed", {"id": area_id})

    app.mount("/realtime", hub.asgi_app())  # streams, the JS client at /realtime/static/
    return app


def default_db_path() -> str:
    return os.path.join(tempfile.gettempdir(), "tidings-home-areas.db")


app = create_app()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        host=os.environ.get("HOME_AREAS_HOST", "127.0.0.1"),
        port=int(os.environ.get("HOME_AREAS_PORT", "8000")),
        timeout_graceful_shutdown=3,  # open streams never end by themselves
    )
