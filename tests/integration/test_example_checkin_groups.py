"""Acceptance scenario 5 (SPEC §11): the after-school check-in app in
``examples/checkin_groups``, served on a real socket, with real SSE and WebSocket clients.
Token expiry seen from the browser client is in ``tests/browser/test_example_checkin_groups.py``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from examples.checkin_groups import app as example
from fastapi import FastAPI
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import ClientConnection

from tests.examples_support import run_example
from tests.servers import free_port, running_app
from tests.sse_support import next_event
from tidings import Publication
from tidings.auth.tokens import mint_token
from tidings.errors import TidingsError
from tidings.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "checkin-test-secret-long-enough-for-hs256"
#: The school office's publisher token, for publishing past the app's endpoints.
OFFICE = mint_token(SECRET, sub="office", ttl=600, admin=True, publish=["*"])
# What a supervisor's screen must never receive: the demo rows' private fields.
PRIVATE = [
    value
    for row in example.DEMO_STUDENTS
    for value in (row[3], row[4], row[5], row[6], row[7])  # last name, birth date, ...
]


def make_app(tmp_path: Path, **settings: Any) -> FastAPI:
    hub_settings = load_settings(jwt_secret=SECRET, jwt_leeway=0, **settings)
    return example.create_app(
        db_path=str(tmp_path / "school.db"), settings=hub_settings, token_ttl=60
    )


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    async with running_app(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http, port


async def token_of(http: httpx.AsyncClient, supervisor: str) -> str:
    response = await http.get("/api/token", params={"supervisor": supervisor})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def recv(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def next_ws_event(ws: ClientConnection) -> dict[str, Any]:
    while (message := await recv(ws))["type"] != "event":
        pass
    return message["data"]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def supervisor_ws(port: int, token: str) -> AsyncIterator[tuple[ClientConnection, list[str]]]:
    """A WebSocket of a supervisor; yields it and the group channels it was given."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/realtime/ws?token={token}") as ws:
        assert (await recv(ws))["type"] == "connected"
        channels = []
        while len(channels) < 10:
            message = await recv(ws)
            assert message["type"] == "subscribed"
            if message["channel"].startswith("client:") or message["channel"].startswith("@"):
                break  # the personal channel comes after the chosen ones
            channels.append(message["channel"])
        yield ws, channels


def decode(event: ServerSentEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.data)
    return data


async def test_connect_hook_streams_active_groups_only_and_isolates_them(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with serve(app) as (http, port):
        ann, ben = await token_of(http, "ann"), await token_of(http, "ben")
        headers = {"Authorization": f"Bearer {ann}"}
        # Ann's SSE stream asks for nothing: the hook subscribes her active group (1),
        # not her inactive one (3).
        async with (
            aconnect_sse(http, "GET", "/realtime/api/v1/events", headers=headers) as ann_sse,
            supervisor_ws(port, ben) as (ben_ws, ben_channels),
        ):
            assert ann_sse.response.status_code == 200
            assert ben_channels == ["group:2"]
            ann_events = ann_sse.aiter_sse()
            # Group 2 first, then group 1: Ann's next event must be group 1's.
            liam = (await http.post("/api/students/3/checkin")).json()
            mia = (await http.post("/api/students/1/checkin")).json()
            got = decode(await next_event(ann_events))
            assert (got["channel"], got["type"], got["id"]) == (
                "group:1",
                "student_checkin",
                mia["id"],
            )
            assert got["data"]["student"] == "Mia L."
            got = await next_ws_event(ben_ws)
            assert (got["channel"], got["id"]) == ("group:2", liam["id"])
            assert got["data"]["student"] == "Liam O."
            # Asking for another group by hand is refused, over either transport.
            await ben_ws.send(json.dumps({"type": "subscribe", "channel": "group:1", "id": 1}))
            refused = await recv(ben_ws)
            assert (refused["type"], refused["code"], refused["id"]) == ("error", "forbidden", 1)
            # Nothing of group 1 reached Ben meanwhile: his next event is group 2's.
            await http.post("/api/students/2/checkin")
            end = (await http.post("/api/groups/2/activities", json={"name": "Lego"})).json()
            got = await next_ws_event(ben_ws)
            assert (got["channel"], got["type"], got["id"]) == (
                "group:2",
                "activity_start",
                end["id"],
            )
        for channel in ("group:2", "group:3"):
            sse = await http.get(
                f"/realtime/api/v1/events?channel={channel}", headers=headers, timeout=5
            )
            assert sse.status_code == 403, (channel, sse.text)
        # The permissions table is read at each connect: Ann's group 3 becomes active.
        app.state.school.set_active("ann", 3, True)
        async with supervisor_ws(port, ann) as (_, channels):
            assert channels == ["group:1", "group:3"]
        # A supervisor with no active group gets no token and no stream.
        assert (await http.get("/api/token", params={"supervisor": "eve"})).status_code == 403
        stranger = mint_token(SECRET, sub="eve", ttl=60, channels=["group:*"])
        sse = await http.get(
            "/realtime/api/v1/events", headers={"Authorization": f"Bearer {stranger}"}
        )
        assert sse.status_code == 403
        assert sse.json()["error"]["code"] == "connect_refused"


async def test_events_carry_display_level_fields_only(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with serve(app) as (http, port):
        async with supervisor_ws(port, await token_of(http, "cleo")) as (ws, channels):
            assert channels == ["group:1", "group:2"]
            await http.post("/api/students/1/checkin")
            await http.post("/api/students/3/checkout")
            started = await http.post("/api/groups/1/activities", json={"name": "Football"})
            activity_id = started.json()["data"]["activity_id"]
            await http.post(f"/api/activities/{activity_id}/end")
            raw = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
        events = [json.loads(frame)["data"] for frame in raw]
        assert [e["type"] for e in events] == [
            "student_checkin",
            "student_checkout",
            "activity_start",
            "activity_end",
        ]
        student_fields = {"student_id", "student", "group", "group_name", "time"}
        activity_fields = {"activity_id", "activity", "group", "group_name", "time"}
        assert [set(e["data"]) for e in events] == [student_fields] * 2 + [activity_fields] * 2
        assert events[1]["data"]["student"] == "Liam O."
        assert events[3]["data"]["activity"] == "Football"
        for frame in raw:
            for private in PRIVATE:
                assert private not in str(frame), private
        # Whoever publishes, the hub refuses a student event that carries more.
        leaky = {**events[0]["data"], "birth_date": "2016-03-14"}
        with pytest.raises(TidingsError) as refused:
            await app.state.hub.publish("group:1", "student_checkin", leaky)
        assert refused.value.code == "invalid_event"
        publish = await http.post(
            "/realtime/api/v1/publish",
            json={"channel": "group:1", "type": "student_checkout", "data": leaky},
            headers={"Authorization": f"Bearer {OFFICE}"},
        )
        assert publish.status_code == 400
        assert publish.json()["error"]["code"] == "invalid_event"


def test_event_builders_keep_display_fields_of_a_whole_row() -> None:
    row = {
        "id": 7,
        "group_id": 1,
        "group_name": "Robins",
        "first_name": " Mia ",
        "last_name": "lindqvist",
        "birth_date": "2016-03-14",
        "address": "12 Elm Road",
        "guardian_name": "Eva Lindqvist",
        "guardian_phone": "+46 70 111 22 33",
        "checked_in_at": "2026-01-01T15:00:00+00:00",
    }
    assert example.student_notice(row, "T") == {
        "student_id": 7,
        "student": "Mia L.",
        "group": 1,
        "group_name": "Robins",
        "time": "T",
    }
    assert example.display_name("Noah", "") == "Noah"


async def test_broadcast_to_a_group_nobody_follows_succeeds_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(tmp_path)
    async with serve(app) as (http, port):
        async with supervisor_ws(port, await token_of(http, "ann")) as (ws, _):
            # Group 3 (Zoe's) has no supervisor connected: the check-in is stored and
            # answered like any other, and goes nowhere.
            response = await http.post("/api/students/4/checkin")
            assert response.status_code == 200, response.text
            assert response.json()["channel"] == "group:3"
            # Ann's stream got nothing of it: her next event is group 1's.
            mia = (await http.post("/api/students/1/checkin")).json()
            assert (await next_ws_event(ws))["id"] == mia["id"]
    assert app.state.hub.counters.slow_consumer_disconnects == 0
    noise = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == []


def stuck_websocket(port: int, token: str) -> socket.socket:
    """A supervisor's WebSocket that upgrades and then never reads a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /realtime/ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


async def test_a_slow_supervisor_is_cut_off_without_delaying_the_others(tmp_path: Path) -> None:
    app = make_app(tmp_path, queue_size=64)
    hub = app.state.hub
    async with serve(app) as (http, port):
        async with supervisor_ws(port, await token_of(http, "cleo")) as (healthy, _):
            stuck = stuck_websocket(port, await token_of(http, "ann"))
            try:
                async with asyncio.timeout(5):
                    while len(hub.connections) < 2:
                        await asyncio.sleep(0.01)  # the stuck client sends nothing to await
                (slow,) = (c for c in hub.connections.values() if c.identity.client_id == "ann")
                # A busy afternoon, in bursts of 32 as the endpoints would announce them.
                # They go straight to the hub: the kernel buffers megabytes for the stuck
                # socket before the hub's queue of 64 frames even starts to fill.
                name = "Treasure hunt in the school garden, then juice and a story (reading corner)"
                row = {"id": 1, "name": name, "group_id": 1, "group_name": "Robins"}
                burst = [
                    Publication("group:1", "activity_start", example.activity_notice(row, "T"))
                ] * 32
                latencies = []
                async with asyncio.timeout(30):
                    for _ in range(1000):
                        sent = time.perf_counter()
                        events = await hub.publish_many(burst)
                        for event in events:  # the healthy one gets each, in order
                            assert (await next_ws_event(healthy))["id"] == event.id
                        latencies.append(time.perf_counter() - sent)
                        if hub.counters.slow_consumer_disconnects:
                            break
                    while slow.id in hub.connections:
                        await asyncio.sleep(0.01)  # it ends on its own task
                assert slow.session.close_reason == "slow_consumer"
                assert hub.counters.slow_consumer_disconnects == 1
                latencies.sort()
                assert latencies[len(latencies) * 99 // 100] < 0.25, latencies[-5:]
                # The others carry on.
                after = (await http.post("/api/students/1/checkin")).json()
                assert (await next_ws_event(healthy))["id"] == after["id"]
            finally:
                stuck.close()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_token_expiry_closes_the_stream(tmp_path: Path, transport: str) -> None:
    app = example.create_app(
        db_path=str(tmp_path / "school.db"),
        settings=load_settings(jwt_secret=SECRET, jwt_leeway=0),
        token_ttl=1,
    )
    async with serve(app) as (http, port):
        token = await token_of(http, "ann")
        async with asyncio.timeout(5):
            if transport == "websocket":
                async with supervisor_ws(port, token) as (ws, _):
                    message = await recv(ws, timeout=4)
                    assert (message["type"], message["reason"]) == ("disconnect", "token_expired")
                    await ws.wait_closed()
                    assert ws.close_code == 4002
            else:
                headers = {"Authorization": f"Bearer {token}"}
                async with aconnect_sse(
                    http, "GET", "/realtime/api/v1/events", headers=headers
                ) as source:
                    frames = [f async for f in source.aiter_sse() if f.event == "disconnect"]
                assert [decode(f)["reason"] for f in frames] == ["token_expired"]


def test_runs_as_documented(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CHECKIN_DB": str(tmp_path / "school.db"), "CHECKIN_PORT": str(port)}
    env.pop("TIDINGS_JWT_SECRET", None)
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "examples/checkin_groups/app.py"]
    with run_example(
        command, tmp_path / "server.log", env=env, ready=lambda: httpx.get(base, timeout=1)
    ):
        token = httpx.get(f"{base}/api/token?supervisor=ann", timeout=5)
        assert token.status_code == 200, token.text
        assert httpx.get(base + "/", timeout=5).text.startswith("<!doctype html>")
        assert httpx.get(base + "/realtime/static/tidings.js", timeout=5).status_code == 200
        assert httpx.post(f"{base}/api/students/1/checkin", timeout=5).status_code == 200
