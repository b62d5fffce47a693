"""Acceptance 3 with the SQLite store: a ``tidings serve`` process killed with SIGKILL and
started again on the same file resumes clients exactly — over SSE (``Last-Event-ID``) and
WebSocket (``since``) — with the same ids in the history API, and still bounds history."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse

from tests.servers import HubProcess, start_process
from tests.sse_support import next_event

CHANNEL = "orders"
HISTORY_SIZE = 60


async def serve(processes: list[HubProcess], db: Path) -> HubProcess:
    process = await asyncio.to_thread(
        start_process, "--store", f"sqlite:///{db}", "--history-size", str(HISTORY_SIZE)
    )
    processes.append(process)
    return process


async def publish(http: httpx.AsyncClient, first: int, count: int) -> list[dict[str, Any]]:
    stored = []
    for n in range(first, first + count):
        response = await http.post(
            "/api/v1/publish", json={"channel": CHANNEL, "type": "order", "data": {"n": n}}
        )
        assert response.status_code == 201, response.text
        stored.append(response.json())
    return stored


async def history(http: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await http.get(f"/api/v1/channels/{CHANNEL}/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


next_sse = next_event


async def next_ws(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


async def test_resume_is_exact_after_sigkill_and_restart(
    tmp_path: Path, processes: list[HubProcess]
) -> None:
    db = tmp_path / "t.db"
    first = await serve(processes, db)
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
        published = await publish(http, 1, 50)
        before = await history(http, limit=100)
    assert [event["data"]["n"] for event in published] == list(range(1, 51))
    assert before["events"] == published

    # No shutdown at all: whatever a 201 answered must already be on disk.
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = await serve(processes, db)
    ws_url = second.url.replace("http://", "ws://") + "/ws"
    event_20 = published[19]["id"]
    async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
        ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["store"] == "ok"

        # The history API answers with the same ids as before the kill.
        assert (await history(http, limit=100))["events"] == published
        resumed = await history(http, since=event_20)
        assert resumed["complete"] is True
        assert resumed["events"] == published[20:]

        # SSE: resume from event 20 with Last-Event-ID: exactly 21..50, then live.
        url = f"/api/v1/events?channel={CHANNEL}"
        async with aconnect_sse(http, "GET", url, headers={"Last-Event-ID": event_20}) as sse:
            events = sse.aiter_sse()
            replay = [await next_sse(events) for _ in range(30)]
            assert [json.loads(frame.data) for frame in replay] == published[20:]
            assert [frame.id for frame in replay] == [e["id"] for e in published[20:]]

            # WebSocket: resume from event 20 with since: the same 21..50, then live.
            async with websockets.connect(ws_url) as ws:
                await ws.send(
                    json.dumps({"type": "subscribe", "channel": CHANNEL, "since": event_20})
                )
                subscribed = await next_ws(ws, "subscribed")
                assert subscribed["recovered"] is True
                ws_replay = [(await next_ws(ws, "event"))["data"] for _ in range(30)]
                assert ws_replay == published[20:]

                # Live events continue the same history: same epoch, next offsets.
                live = await publish(http, 51, 2)
                assert json.loads((await next_sse(events)).data) == live[0]
                assert json.loads((await next_sse(events)).data) == live[1]
                assert (await next_ws(ws, "event"))["data"] == live[0]
                assert (await next_ws(ws, "event"))["data"] == live[1]
        epoch, _, last_offset = published[-1]["id"].rpartition("-")
        assert [event["id"] for event in live] == [
            f"{epoch}-{int(last_offset) + 1}",
            f"{epoch}-{int(last_offset) + 2}",
        ]

        # history_size still bounds the restarted hub: 72 published, 60 kept.
        more = await publish(http, 53, 20)
        everything = published + live + more
        bounded = await history(http, limit=1000)
        assert bounded["events"] == everything[-HISTORY_SIZE:]
        evicted = published[len(everything) - HISTORY_SIZE - 2]["id"]  # event 11 of 72
        assert (await history(http, since=evicted))["complete"] is False
        kept_from = everything[-HISTORY_SIZE - 1]["id"]
        assert (await history(http, since=kept_from))["events"] == everything[-HISTORY_SIZE:]


async def test_ready_fails_when_the_database_file_is_deleted(
    tmp_path: Path, processes: list[HubProcess]
) -> None:
    db = tmp_path / "t.db"
    server = await serve(processes, db)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/ready")).status_code == 200
        await publish(http, 1, 1)
        db.unlink()  # events written from now on would be lost at the next restart
        response = await http.get("/ready")
        assert response.status_code == 503, response.text
        assert "store" in response.json()["error"]["message"]
