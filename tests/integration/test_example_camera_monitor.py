"""Acceptance scenario 2 (SPEC §11): the video-recognition event monitor in
``examples/camera_monitor``, served on a real socket, with real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from examples.camera_monitor import app as example
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.examples_support import run_example
from tests.servers import free_port, running_app
from tidings import Hub, Settings

ROOT = Path(__file__).resolve().parents[2]

DETECTION = {
    "camera_id": "gate-2",
    "label": "person",
    "confidence": 0.93,
    "details": {"box": [1, 2]},
}


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with running_app(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http, f"ws://127.0.0.1:{port}"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


@contextlib.asynccontextmanager
async def dashboard(ws_base: str) -> AsyncIterator[ClientConnection]:
    """A live dashboard on ``/ws/events``, the app's own path, subscribed to ``events``."""
    async with websockets.connect(ws_base + "/ws/events") as ws:
        assert (await recv(ws))["type"] == "connected"
        subscribed = await recv(ws)
        assert subscribed["type"] == "subscribed" and subscribed["channel"] == "events"
        yield ws


async def test_created_event_is_stored_and_broadcast(tmp_path: Path) -> None:
    app = example.create_app(db_path=str(tmp_path / "events.db"))
    async with serve(app) as (http, ws_base), dashboard(ws_base) as ws:
        response = await http.post("/api/events", json=DETECTION)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["id"] == 1
        assert {k: created[k] for k in DETECTION} == DETECTION
        # The app's own event, as the scenario's dashboards expect it: nothing around it.
        assert await recv(ws) == {"type": "event", "data": created}
        # A second one arrives after the first, in order.
        second = (await http.post("/api/events", json={**DETECTION, "label": "car"})).json()
        assert await recv(ws) == {"type": "event", "data": second}
    assert app.state.hub.counters.nowait_failed == 0


async def test_every_dashboard_gets_every_event(tmp_path: Path) -> None:
    app = example.create_app(db_path=str(tmp_path / "events.db"))
    async with serve(app) as (http, ws_base), contextlib.AsyncExitStack() as stack:
        screens = [await stack.enter_async_context(dashboard(ws_base)) for _ in range(20)]
        created = [(await http.post("/api/events", json=DETECTION)).json() for _ in range(3)]
        for ws in screens:
            assert [await recv(ws) for _ in created] == [
                {"type": "event", "data": event} for event in created
            ]


async def test_creation_succeeds_with_nobody_listening_and_missed_events_are_fetchable(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "events.db"
    app = example.create_app(db_path=str(db_path))
    async with serve(app) as (http, ws_base):
        created = []
        for n in range(3):
            response = await http.post("/api/events", json={**DETECTION, "details": {"n": n}})
            assert response.status_code == 201, response.text
            created.append(response.json())
        assert [e["id"] for e in created] == [1, 2, 3]
        # A dashboard that saw event 1 catches up over REST ...
        missed = await http.get("/api/events", params={"since_id": 1})
        assert missed.status_code == 200
        assert missed.json() == {"events": created[1:]}
        assert (await http.get("/api/events", params={"since_id": -1})).status_code == 422
        # ... then follows live events.
        async with dashboard(ws_base) as ws:
            live = (await http.post("/api/events", json=DETECTION)).json()
            assert await recv(ws) == {"type": "event", "data": live}
    # The database is the record, independent of the hub.
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert [row[0] for row in db.execute("SELECT id FROM events ORDER BY id")] == [1, 2, 3, 4]


async def test_ping_pong_and_origin_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_ALLOWED_ORIGINS", "https://monitor.example, https://ops.example")
    app = example.create_app(db_path=str(tmp_path / "events.db"))
    url = "/ws/events"
    async with serve(app) as (http, ws_base):
        async with dashboard(ws_base) as ws:
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            pong = await recv(ws)
            assert pong["type"] == "pong" and pong["id"] == 7
        async with websockets.connect(ws_base + url, origin="https://ops.example") as ws:
            assert (await recv(ws))["type"] == "connected"
        # A page from a foreign origin is refused at the handshake.
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(ws_base + url, origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        sse = await http.get(
            "/realtime/api/v1/events?channel=events", headers={"Origin": "https://evil.example"}
        )
        assert sse.status_code == 403
        # The app's own REST API is not a stream: no origin rule applies to it.
        created = await http.post(
            "/api/events", json=DETECTION, headers={"Origin": "https://evil.example"}
        )
        assert created.status_code == 201


def test_broadcast_failure_never_fails_creation(tmp_path: Path) -> None:
    hub = Hub(Settings())  # never started: every broadcast fails
    manager = example.EventManager(str(tmp_path / "events.db"), hub)
    manager.open()
    event = manager.create_event("gate-1", "person", 0.5)
    assert event["id"] == 1
    assert hub.counters.nowait_failed == 1
    quiet = example.EventManager(str(tmp_path / "events.db"), hub=None)
    assert quiet.create_event("gate-1", "dog", 0.7)["id"] == 2
    assert [e["label"] for e in manager.events_since(0, 10)] == ["person", "dog"]


@pytest.mark.timeout(60)
def test_its_bench_measures_creation_to_delivery() -> None:
    """The README's latency figures come from this script: a tiny run of it must deliver
    every event created over ``POST /api/events`` to every ``/ws/events`` subscriber."""
    command = [sys.executable, "-m", "examples.camera_monitor.bench", "--subscribers", "3"]
    command += ["--events", "5", "--rate", "100", "--baseline", "", "--json"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=55, check=False)
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    [result] = json.loads(completed.stdout)["results"]
    assert (result["server"], result["connected"]) == ("camera_monitor", 3)
    assert (result["delivered"], result["publish_failures"]) == (15, 0)
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]


def test_database_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DB", str(tmp_path / "from-env.db"))
    assert example.create_app().state.events.db_path == str(tmp_path / "from-env.db")
    monkeypatch.delenv("MONITOR_DB")
    assert example.create_app().state.events.db_path == example.default_db_path()


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "examples/camera_monitor/app.py"], id="script"),
        pytest.param(
            [sys.executable, "-m", "uvicorn", "examples.camera_monitor.app:app"], id="uvicorn"
        ),
    ],
)
def test_runs_as_documented(command: list[str], tmp_path: Path) -> None:
    port = free_port()
    args = ["--port", str(port)] if "uvicorn" in command else []
    env = {**os.environ, "MONITOR_DB": str(tmp_path / "events.db"), "MONITOR_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    ready = lambda: httpx.get(f"{base}/realtime/health", timeout=1)  # noqa: E731
    with run_example([*command, *args], log_path, env=env, ready=ready):
        response = httpx.post(f"{base}/api/events", json=DETECTION, timeout=5)
        assert response.status_code == 201, response.text
    # SIGTERM is a clean shutdown: the lifespan (which stops the hub) ran to its end.
    assert "Application shutdown complete" in log_path.read_text()


def test_ctrl_c_under_plain_uvicorn_closes_streams_with_server_shutdown(tmp_path: Path) -> None:
    """Embedded, a hub's open streams must not hold uvicorn's shutdown: on Ctrl+C each
    gets ``disconnect`` (``server_shutdown``) and the process ends cleanly, as under
    ``tidings serve``."""
    port = free_port()
    env = {**os.environ, "MONITOR_DB": str(tmp_path / "events.db")}
    command = [sys.executable, "-m", "uvicorn", "examples.camera_monitor.app:app"]
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        url = f"http://127.0.0.1:{port}/realtime/api/v1/events?channel=events"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                stream = httpx.stream("GET", url, timeout=10)
                response = stream.__enter__()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the example did not start in 20 s"
                time.sleep(0.05)
        try:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert any(line.startswith("event: position") for line in lines)
            process.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            rest = "\n".join(lines)  # to the end of the stream
        finally:
            stream.__exit__(None, None, None)
        assert "event: disconnect" in rest and "server_shutdown" in rest
        process.wait(timeout=10)
        assert time.monotonic() - signalled < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert process.returncode in (0, -signal.SIGINT), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output and "CancelledError" not in output
