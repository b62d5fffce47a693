"""Scheduled publish (SPEC §8) over real sockets: delayed events arrive after their time
and not before, keys replace and cancel, the same over WebSocket and from Python, limits,
rights, a SQLite restart with pending schedules, and a Redis cluster that loses a node."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.redis_support import delete_prefix, redis_url, unique_prefix, with_options
from tests.servers import running_hub, start_process
from tidings.auth.tokens import mint_token
from tidings.core.scheduled import Scheduled

pytestmark = pytest.mark.streams


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def _events(ws: websockets.ClientConnection, count: int, timeout: float = 10) -> list[Any]:
    found: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(found) < count:
            message = json.loads(await ws.recv())
            if message["type"] == "event":
                found.append(message["data"])
    return found


async def _subscribed(url: str, channel: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"{url}/ws?channel={channel}")
    async with asyncio.timeout(5):
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
    return ws


async def test_a_delayed_event_arrives_after_its_time_and_not_before() -> None:
    async with running_hub() as served:
        ws = await _subscribed(served.ws_url, "net")
        async with httpx.AsyncClient(base_url=served.url) as http:
            sent = time.time()
            answer = await http.post(
                "/api/v1/publish",
                json={"channel": "net", "type": "network_expiring", "data": 1, "delay_s": 0.5},
            )
            assert answer.status_code == 202, answer.text
            scheduled = answer.json()["scheduled"]
            assert set(scheduled) == {"key", "channel", "type", "at"}
            due = _epoch(scheduled["at"])
            assert 0.45 <= due - sent <= 1.0
            # An immediate event published now overtakes it.
            now = await http.post("/api/v1/publish", json={"channel": "net", "data": "now"})
            first, second = await _events(ws, 2)
            assert first["id"] == now.json()["id"]
            assert second["type"] == "network_expiring"
            assert _epoch(second["timestamp"]) >= due - 0.002  # not before (ms precision)
            assert (await http.get("/api/v1/scheduled")).json() == {"scheduled": []}
        await ws.close()


async def test_the_same_key_moves_the_event_and_delete_cancels_it() -> None:
    async with running_hub() as served:
        ws = await _subscribed(served.ws_url, "net")
        async with httpx.AsyncClient(base_url=served.url) as http:
            soon = datetime.now(UTC) + timedelta(seconds=0.3)
            body = {"channel": "net", "type": "expiring", "key": "net-7", "data": {"v": 1}}
            await http.post("/api/v1/publish", json={**body, "at": soon.isoformat()})
            # Extended: the warning moves a little later, with new data; only it fires.
            moved = await http.post(
                "/api/v1/publish", json={**body, "data": {"v": 2}, "delay_s": 0.8}
            )
            assert moved.status_code == 202 and moved.json()["scheduled"]["key"] == "net-7"
            listed = (await http.get("/api/v1/scheduled", params={"channel": "net"})).json()
            assert [(s["key"], s["data"]) for s in listed["scheduled"]] == [("net-7", {"v": 2})]
            # Another one, cancelled: never fires.
            await http.post(
                "/api/v1/publish",
                json={"channel": "net", "type": "gone", "data": 0, "delay_s": 0.2, "key": "x"},
            )
            assert (await http.delete("/api/v1/scheduled/x")).status_code == 204
            missing = await http.delete("/api/v1/scheduled/x")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "not_scheduled"
            (event,) = await _events(ws, 1)
            assert (event["type"], event["data"]) == ("expiring", {"v": 2})
            marker = await http.post("/api/v1/publish", json={"channel": "net", "data": "m"})
            (after,) = await _events(ws, 1)
            assert after["id"] == marker.json()["id"]  # nothing else came in between
        await ws.close()


async def test_websocket_and_python_schedule_too_and_batches_mix() -> None:
    async with running_hub() as served:
        ws = await _subscribed(served.ws_url, "jobs")
        await ws.send(
            json.dumps(
                {
                    "type": "publish",
                    "channel": "jobs",
                    "event": "ws",
                    "data": 1,
                    "delay_s": 0.1,
                    "key": "from-ws",
                    "id": 5,
                }
            )
        )
        async with asyncio.timeout(5):
            while (reply := json.loads(await ws.recv()))["type"] != "scheduled":
                pass
        assert reply["id"] == 5 and reply["scheduled"]["key"] == "from-ws"
        entry = await served.hub.publish("jobs", "py", 2, delay=0.2)
        assert isinstance(entry, Scheduled)
        async with httpx.AsyncClient(base_url=served.url) as http:
            batch = await http.post(
                "/api/v1/publish",
                json={
                    "events": [
                        {"channel": "jobs", "type": "now", "data": 3},
                        {"channel": "jobs", "type": "batch", "data": 4, "delay_s": 0.3},
                    ]
                },
            )
            assert batch.status_code == 202
            assert [e["type"] for e in batch.json()["events"]] == ["now"]
            assert [s["type"] for s in batch.json()["scheduled"]] == ["batch"]
        events = await _events(ws, 4)
        assert [e["type"] for e in events] == ["now", "ws", "py", "batch"]
        assert await served.hub.cancel_scheduled("nothing") is False
        await ws.close()


async def test_bad_schedules_and_the_limit_are_clear_errors() -> None:
    async with running_hub(max_scheduled=2) as served:
        async with httpx.AsyncClient(base_url=served.url) as http:
            for body, code in (
                ({"at": "tomorrow"}, "invalid_schedule"),
                ({"at": "2030-01-01T00:00:00"}, "invalid_schedule"),
                ({"at": "2030-01-01T00:00:00Z", "delay_s": 1}, "invalid_schedule"),
                ({"key": "k"}, "invalid_schedule"),
                ({"delay_s": 1, "key": "has space"}, "invalid_schedule"),
                ({"delay_s": -1}, "invalid_request"),
                ({"delay_s": 1, "idempotency_key": "i"}, "invalid_schedule"),
                ({"at": "9999-01-01T00:00:00Z"}, "invalid_schedule"),
            ):
                answer = await http.post(
                    "/api/v1/publish", json={"channel": "c", "data": 1, **body}
                )
                assert answer.status_code == 400, body
                assert answer.json()["error"]["code"] == code, (body, answer.text)
            for key in ("a", "b"):
                ok = await http.post(
                    "/api/v1/publish", json={"channel": "c", "data": 1, "delay_s": 60, "key": key}
                )
                assert ok.status_code == 202
            full = await http.post(
                "/api/v1/publish", json={"channel": "c", "data": 1, "delay_s": 60, "key": "c"}
            )
            assert full.status_code == 429
            assert full.json()["error"]["code"] == "too_many_scheduled"
            again = await http.post(
                "/api/v1/publish", json={"channel": "c", "data": 2, "delay_s": 60, "key": "a"}
            )
            assert again.status_code == 202  # replacing is not adding


async def test_rights_apply_to_scheduling_listing_and_cancelling() -> None:
    secret = "scheduled-secret-that-is-long-enough-for-hs256"
    async with running_hub(jwt_secret=secret, api_keys={"ops": "admin-key"}) as served:
        alice = {"Authorization": "Bearer " + mint_token(secret, sub="a", publish=["a:*"])}
        admin = {"Authorization": "Bearer admin-key"}
        async with httpx.AsyncClient(base_url=served.url) as http:
            mine = {"channel": "a:1", "data": 1, "delay_s": 60, "key": "k-a"}
            assert (await http.post("/api/v1/publish", json=mine, headers=alice)).status_code == 202
            theirs = {"channel": "b:1", "data": 1, "delay_s": 60, "key": "k-b"}
            assert (
                await http.post("/api/v1/publish", json=theirs, headers=admin)
            ).status_code == 202
            refused = await http.post(
                "/api/v1/publish", json={**theirs, "channel": "b:1"}, headers=alice
            )
            assert refused.status_code == 403
            # Alice may not take over a key pending on a channel she cannot publish to.
            hijack = await http.post("/api/v1/publish", json={**mine, "key": "k-b"}, headers=alice)
            assert hijack.status_code == 403
            assert (await http.get("/api/v1/scheduled", headers=alice)).status_code == 403
            own = await http.get("/api/v1/scheduled", params={"channel": "a:1"}, headers=alice)
            assert [s["key"] for s in own.json()["scheduled"]] == ["k-a"]
            assert (await http.delete("/api/v1/scheduled/k-b", headers=alice)).status_code == 403
            assert (await http.delete("/api/v1/scheduled/k-a", headers=alice)).status_code == 204
            everything = await http.get("/api/v1/scheduled", headers=admin)
            assert [s["key"] for s in everything.json()["scheduled"]] == ["k-b"]


async def test_sqlite_keeps_schedules_across_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tidings.db'}"
    node = start_process("--store", store, "--log-level", "warning")
    try:
        with httpx.Client(base_url=node.url) as http:
            for key, delay in (("due-while-down", 0.5), ("still-pending", 3600)):
                body = {"channel": "net", "type": key, "data": key, "delay_s": delay, "key": key}
                assert http.post("/api/v1/publish", json=body).status_code == 202
    finally:
        assert node.stop(signal.SIGKILL) != 0  # no graceful anything
        node.close()
    await asyncio.sleep(0.6)  # the first falls due while no hub runs (nothing to await)
    node = start_process("--store", store, "--log-level", "warning")
    try:
        async with httpx.AsyncClient(base_url=node.url) as http:
            async with asyncio.timeout(10):
                while True:  # fired at start, by the runner's first claim
                    history = (await http.get("/api/v1/channels/net/history")).json()
                    if history["events"]:
                        break
                    await asyncio.sleep(0.05)
            assert [e["type"] for e in history["events"]] == ["due-while-down"]
            pending = (await http.get("/api/v1/scheduled")).json()["scheduled"]
            assert [s["key"] for s in pending] == ["still-pending"]
    finally:
        node.stop()
        node.close()


@pytest.mark.redis
async def test_a_cluster_fires_each_schedule_once_when_a_node_dies() -> None:
    base = redis_url()
    prefix = unique_prefix()
    url = with_options(base, prefix=prefix)
    args = ("--broker", url, "--store", url, "--log-level", "warning")
    a, b = start_process(*args), start_process(*args)
    count = 40
    try:
        ws = await _subscribed(b.url.replace("http", "ws"), "cluster")
        async with httpx.AsyncClient() as http:
            # Due in 1.5 s: node A, which scheduled them and would fire them, dies first.
            events = [
                {"channel": "cluster", "type": "t", "data": n, "delay_s": 1.5 + n / 100}
                for n in range(count)
            ]
            answer = await http.post(a.url + "/api/v1/publish", json={"events": events})
            assert answer.status_code == 202
            a.stop(signal.SIGKILL)
            got = await _events(ws, count, timeout=20)
            assert sorted(e["data"] for e in got) == list(range(count))
            # And no second copy of any: the history holds each once.
            history = (await http.get(b.url + "/api/v1/channels/cluster/history")).json()
            assert sorted(e["data"] for e in history["events"]) == list(range(count))
            assert (await http.get(b.url + "/api/v1/scheduled")).json() == {"scheduled": []}
        await ws.close()
    finally:
        for node in (a, b):
            node.stop()
            node.close()
        await delete_prefix(base, prefix)
