"""Acceptance scenario 4 (SPEC §11): the home-automation area manager in
``examples/home_areas``, served on a real socket, with real WebSocket and SSE clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from examples.home_areas import app as example
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.examples_support import run_example
from tests.servers import free_port, running_app

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def serve(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    app = example.create_app(db_path=str(tmp_path / "home.db"))
    async with running_app(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield app, http, f"ws://127.0.0.1:{port}"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def token_for(http: httpx.AsyncClient, client_id: str) -> str:
    response = await http.post("/api/clients", json={"client_id": client_id})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def connect(http: httpx.AsyncClient, ws_base: str, client_id: str) -> ClientConnection:
    """A paired client's socket, past its welcome and the channels the server chose."""
    token = await token_for(http, client_id)
    ws = await websockets.connect(f"{ws_base}/realtime/ws?token={token}")
    welcome = await recv(ws)
    assert welcome["type"] == "connected" and welcome["client_id"] == client_id
    joined = {(await recv(ws))["channel"] for _ in range(2)}
    assert joined == {f"client:{client_id}", "broadcast"}
    return ws


async def next_event(ws: ClientConnection) -> tuple[str, Any]:
    message = await recv(ws)
    assert message["type"] == "event", message
    return message["data"]["type"], message["data"]["data"]


async def test_each_area_event_reaches_the_right_clients_only(tmp_path: Path) -> None:
    async with serve(tmp_path) as (_, http, ws_base):
        alice, bob, carol = [await connect(http, ws_base, n) for n in ("alice", "bob", "carol")]
        try:
            # Added: every client hears of it (notify_all_clients, channel `broadcast`).
            added = await http.post(
                "/api/areas", json={"name": "Kitchen", "client_ids": ["alice", "bob"]}
            )
            assert added.status_code == 201, added.text
            kitchen = added.json()
            assert kitchen == {
                "id": 1,
                "name": "Kitchen",
                "enabled": True,
                "client_ids": ["alice", "bob"],
            }
            for ws in (alice, bob, carol):
                assert await next_event(ws) == ("area_added", kitchen)
            # The rest: only the clients that have the area, as the app's database says.
            updated = (await http.patch("/api/areas/1", json={"name": "Big kitchen"})).json()
            disabled = (await http.post("/api/areas/1/disable")).json()
            enabled = (await http.post("/api/areas/1/enable")).json()
            assert (updated["name"], disabled["enabled"], enabled["enabled"]) == (
                "Big kitchen",
                False,
                True,
            )
            assert (await http.delete("/api/areas/1")).status_code == 204
            for ws in (alice, bob):
                assert [await next_event(ws) for _ in range(4)] == [
                    ("area_updated", updated),
                    ("area_disabled", disabled),
                    ("area_enabled", enabled),
                    ("area_removed", {"id": 1}),
                ]
            # Carol has no kitchen: the next thing she gets is the next area for everyone.
            garage = (
                await http.post("/api/areas", json={"name": "Garage", "client_ids": ["carol"]})
            ).json()
            assert await next_event(carol) == ("area_added", garage)
            await http.post(f"/api/areas/{garage['id']}/disable")
            assert (await next_event(carol))[0] == "area_disabled"
            for ws in (alice, bob):
                assert await next_event(ws) == ("area_added", garage)
            assert (await http.get("/api/areas/1")).status_code == 404
            assert (await http.post("/api/areas/1/enable")).status_code == 404
            assert (await http.get("/api/areas")).json() == {
                "areas": [{**garage, "enabled": False}]
            }
        finally:
            for ws in (alice, bob, carol):
                await ws.close()


async def test_pairing_completed_reaches_the_client_that_started_it(tmp_path: Path) -> None:
    async with serve(tmp_path) as (_, http, ws_base):
        panel = await connect(http, ws_base, "panel")
        other = await connect(http, ws_base, "other")
        try:
            hall = (await http.post("/api/areas", json={"name": "Hall"})).json()
            for ws in (panel, other):
                assert (await next_event(ws))[0] == "area_added"
            code = (await http.post("/api/pairings", json={"client_id": "panel"})).json()["code"]
            done = await http.post(
                f"/api/pairings/{code}/complete",
                json={"client_id": "phone", "area_ids": [hall["id"]]},
            )
            assert done.status_code == 201, done.text
            assert await next_event(panel) == (
                "pairing_completed",
                {"code": code, "client_id": "phone"},
            )
            # A code works once.
            again = await http.post(f"/api/pairings/{code}/complete", json={"client_id": "x"})
            assert again.status_code == 404
            # The new device uses its token at once, and has the area it was paired with.
            phone = await websockets.connect(f"{ws_base}/realtime/ws?token={done.json()['token']}")
            try:
                assert (await recv(phone))["client_id"] == "phone"
                for _ in range(2):
                    assert (await recv(phone))["type"] == "subscribed"
                renamed = (
                    await http.patch(f"/api/areas/{hall['id']}", json={"name": "Entry"})
                ).json()
                assert await next_event(phone) == ("area_updated", renamed)
                # `other` never saw the pairing nor the update: its next event is for all.
                await http.post("/api/areas", json={"name": "Attic"})
                assert (await next_event(other))[1]["name"] == "Attic"
            finally:
                await phone.close()
        finally:
            await panel.close()
            await other.close()


async def test_revoked_client_gets_token_revoked_then_is_disconnected(tmp_path: Path) -> None:
    async with serve(tmp_path) as (_, http, ws_base):
        alice = await connect(http, ws_base, "alice")
        bob = await connect(http, ws_base, "bob")
        token = await token_for(http, "alice")
        try:
            assert (await http.delete("/api/clients/alice")).status_code == 204
            assert await next_event(alice) == (
                "token_revoked",
                {"client_id": "alice", "reason": "unpaired"},
            )
            disconnect = await recv(alice)
            assert (disconnect["type"], disconnect["reason"]) == ("disconnect", "token_revoked")
            assert disconnect["reconnect"] is False
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(alice.recv(), 5)
            assert alice.close_code == 4004
            # Her tokens are refused from now on; bob is untouched.
            refused = await websockets.connect(f"{ws_base}/realtime/ws?token={token}")
            error = await recv(refused)
            assert (error["type"], error["code"]) == ("error", "token_revoked")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(refused.recv(), 5)
            assert refused.close_code == 4001
            await http.post("/api/areas", json={"name": "Porch"})
            assert (await next_event(bob))[0] == "area_added"
            assert (await http.delete("/api/clients/alice")).status_code == 404
        finally:
            await alice.close()
            await bob.close()


async def test_eleventh_connection_in_a_minute_from_one_ip_is_refused(tmp_path: Path) -> None:
    async with serve(tmp_path) as (_, http, ws_base):
        token = await token_for(http, "alice")
        url = f"{ws_base}/realtime/ws?token={token}"
        for _ in range(10):
            async with websockets.connect(url) as ws:
                assert (await recv(ws))["type"] == "connected"
        async with websockets.connect(url) as eleventh:
            error = await recv(eleventh)
            assert (error["type"], error["code"]) == ("error", "rate_limited")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(eleventh.recv(), 5)
            assert eleventh.close_code == 4029
        sse = await http.get(
            "/realtime/api/v1/events", headers={"Authorization": f"Bearer {token}"}
        )
        assert sse.status_code == 429
        assert int(sse.headers["Retry-After"]) > 0
        # The app's own API is not a stream: not limited.
        assert (await http.get("/api/areas")).status_code == 200


def test_runs_as_documented_and_serves_its_test_page(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HOME_AREAS_DB": str(tmp_path / "home.db"), "HOME_AREAS_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "examples/home_areas/app.py"]
    with run_example(
        command, tmp_path / "server.log", env=env, ready=lambda: httpx.get(base, timeout=1)
    ):
        page = httpx.get(base + "/", timeout=5)
        assert page.status_code == 200 and "/realtime/static/tidings.js" in page.text
        script = httpx.get(base + "/realtime/static/tidings.js", timeout=5)
        assert script.status_code == 200 and "createClient" in script.text
