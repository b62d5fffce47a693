"""The JSON API of SPEC §3 over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets

from tests.servers import RunningHub, running_hub, without_node_label


async def test_publish_single_and_batch(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        one = await http.post("/api/v1/publish", json={"channel": "c", "data": {"a": 1}})
        assert one.status_code == 201
        event = one.json()
        assert set(event) == {"id", "channel", "type", "data", "timestamp"}
        assert event["type"] == "message"
        batch = await http.post(
            "/api/v1/publish",
            json={"events": [{"channel": "c", "type": "t", "data": n} for n in range(3)]},
        )
        assert batch.status_code == 201
        events = batch.json()["events"]
        assert [e["data"] for e in events] == [0, 1, 2]
        assert len({e["id"] for e in events} | {event["id"]}) == 4


async def test_idempotency_key_returns_the_first_event(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        body = {"channel": "c", "data": 1, "idempotency_key": "order-42"}
        first = (await http.post("/api/v1/publish", json=body)).json()
        again = await http.post("/api/v1/publish", json={**body, "data": 2})
        assert again.status_code == 201
        assert again.json() == first
        history = (await http.get("/api/v1/channels/c/history")).json()
        assert [e["id"] for e in history["events"]] == [first["id"]]


async def test_idempotency_key_header_returns_the_first_event(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        headers = {"Idempotency-Key": "order-43"}
        first = await http.post(
            "/api/v1/publish", json={"channel": "i", "data": 1}, headers=headers
        )
        assert first.status_code == 201
        again = await http.post(
            "/api/v1/publish", json={"channel": "i", "data": 2}, headers=headers
        )
        assert again.status_code == 201
        assert again.json() == first.json()
        # The header and the body's key are one key: the same key in both is that key.
        both = await http.post(
            "/api/v1/publish",
            json={"channel": "i", "data": 3, "idempotency_key": "order-43"},
            headers=headers,
        )
        assert both.json() == first.json()
        other = await http.post(
            "/api/v1/publish", json={"channel": "i", "data": 4}, headers={"Idempotency-Key": "x"}
        )
        assert other.json()["data"] == 4
        history = (await http.get("/api/v1/channels/i/history")).json()
        assert [e["data"] for e in history["events"]] == [1, 4]


async def test_idempotency_key_header_refusals(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        differ = await http.post(
            "/api/v1/publish",
            json={"channel": "r", "data": 1, "idempotency_key": "a"},
            headers={"Idempotency-Key": "b"},
        )
        assert differ.status_code == 400
        assert differ.json()["error"]["code"] == "invalid_idempotency_key"
        too_long = await http.post(
            "/api/v1/publish",
            json={"channel": "r", "data": 1},
            headers={"Idempotency-Key": "k" * 191},
        )
        assert too_long.status_code == 400
        item_key = await http.post(
            "/api/v1/publish",
            json={"events": [{"channel": "r", "data": 1, "idempotency_key": "own"}]},
            headers={"Idempotency-Key": "batch"},
        )
        assert item_key.status_code == 400
        scheduled = await http.post(
            "/api/v1/publish",
            json={"channel": "r", "data": 1, "delay_s": 60},
            headers={"Idempotency-Key": "later"},
        )
        assert scheduled.status_code == 400
        history = (await http.get("/api/v1/channels/r/history")).json()
        assert history["events"] == []


async def test_idempotency_key_header_on_a_batch_keys_each_item(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        body = {"events": [{"channel": "b1", "data": 1}, {"channel": "b2", "data": 2}]}
        headers = {"Idempotency-Key": "batch-7"}
        first = await http.post("/api/v1/publish", json=body, headers=headers)
        assert first.status_code == 201
        again = await http.post("/api/v1/publish", json=body, headers=headers)
        assert again.json() == first.json()
        # Item i is stored under <key>:<i>: the body's key reaches it.
        alone = await http.post(
            "/api/v1/publish", json={"channel": "b2", "data": 9, "idempotency_key": "batch-7:1"}
        )
        assert alone.json() == first.json()["events"][1]
        for channel in ("b1", "b2"):
            history = (await http.get(f"/api/v1/channels/{channel}/history")).json()
            assert len(history["events"]) == 1
        document = (await http.get("/openapi.json")).json()
        parameters = document["paths"]["/api/v1/publish"]["post"]["parameters"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)


async def test_history_since_limit_and_completeness() -> None:
    async with running_hub(history_size=10) as served:
        async with httpx.AsyncClient(base_url=served.url) as http:
            ids = []
            for n in range(15):
                response = await http.post("/api/v1/publish", json={"channel": "h/x", "data": n})
                ids.append(response.json()["id"])
            newest = (await http.get("/api/v1/channels/h/x/history", params={"limit": 3})).json()
            assert [e["data"] for e in newest["events"]] == [12, 13, 14]
            assert newest["complete"] is True
            assert newest["position"] == ids[-1]
            after = (
                await http.get("/api/v1/channels/h%2Fx/history", params={"since": ids[9]})
            ).json()
            assert [e["data"] for e in after["events"]] == [10, 11, 12, 13, 14]
            assert after["complete"] is True
            paged = (
                await http.get("/api/v1/channels/h/x/history", params={"since": ids[9], "limit": 2})
            ).json()
            assert [e["data"] for e in paged["events"]] == [10, 11]
            gone = (await http.get("/api/v1/channels/h/x/history", params={"since": ids[0]})).json()
            assert gone["complete"] is False
            assert [e["data"] for e in gone["events"]] == list(range(5, 15))
            bad = await http.get("/api/v1/channels/bad channel/history")
            assert bad.status_code == 400
            assert bad.json()["error"]["code"] == "invalid_channel"


async def test_channels_connections_and_presence(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        async with websockets.connect(served.ws_url + "/ws?channel=p1&channel=p2") as ws:
            for _ in range(3):
                await ws.recv()  # connected, subscribed x2
            stored = (
                await http.post("/api/v1/publish", json={"channel": "kept", "data": 1})
            ).json()
            channels = (await http.get("/api/v1/channels")).json()["channels"]
            assert {"channel": "p1", "subscribers": 1, "events": 0, "last_event_at": None} in (
                channels
            )
            # A channel with history but nobody following it is listed too (#12.17).
            assert {
                "channel": "kept",
                "subscribers": 0,
                "events": 1,
                "last_event_at": stored["timestamp"],
            } in channels
            # Followed channels first.
            assert [c["subscribers"] for c in channels] == [1, 1, 0]
            connections = (await http.get("/api/v1/connections")).json()["connections"]
            (connection,) = connections
            assert connection["transport"] == "websocket"
            assert connection["channels"] == ["p1", "p2"]
            assert connection["remote"].startswith("127.0.0.1:")
            presence = (await http.get("/api/v1/channels/p1/presence")).json()
            assert presence == {"channel": "p1", "connections": 1, "clients": []}


async def test_health_ready_metrics_and_request_ids(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        health = await http.get("/health")
        assert health.json() == {"status": "ok"}
        assert len(health.headers["x-request-id"]) == 16
        echoed = await http.get("/health", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        ready = await http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        await http.post("/api/v1/publish", json={"channel": "m", "data": 1})
        text = (await http.get("/metrics")).text
        samples = [line for line in text.splitlines() if not line.startswith("#")]
        # Every sample names the node (process) it comes from.
        node = f'node="{served.hub.node_id}"'
        assert samples and all(node in line for line in samples)
        metrics = without_node_label(text)
        assert "tidings_events_published_total 1.0" in metrics
        assert 'tidings_connections{transport="sse"} 0.0' in metrics
        assert "tidings_slow_consumer_disconnects_total" in metrics


async def test_ready_fails_when_a_backend_is_down(served: RunningHub) -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    served.hub.store.ping = broken  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=served.url) as http:
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["message"] == "the store cannot be reached"


async def test_openapi_documents_streams(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        schema = (await http.get("/openapi.json")).json()
        for path in (
            "/api/v1/publish",
            "/api/v1/events",
            "/ws",
            "/api/v1/channels/{channel}/history",
        ):
            assert path in schema["paths"], path
        sse = schema["paths"]["/api/v1/events"]["get"]
        assert "text/event-stream" in sse["responses"]["200"]["content"]
        assert "EventSource" in sse["description"]
        assert "curl" in sse["description"]
        assert "PublishRequest" in schema["components"]["schemas"]
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()


async def test_dashboard_is_served(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "tidings.js" in page.text  # the dashboard runs on the JS client
        client = await http.get("/static/tidings.js")
        assert client.status_code == 200
        assert "javascript" in client.headers["content-type"]
        assert "export function createClient" in client.text


async def test_publish_while_the_store_is_down_is_a_503_not_a_loss() -> None:
    from tidings.backends.memory import MemoryStore
    from tidings.hub import Hub
    from tidings.settings import Settings

    class DownStore(MemoryStore):
        def append_now(self, events: object) -> object:  # type: ignore[override]
            raise ConnectionError("down")

    async with running_hub(Hub(Settings(), store=DownStore())) as served:
        async with httpx.AsyncClient(base_url=served.url) as http:
            response = await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unavailable"
            assert json.dumps(response.json()).count("Traceback") == 0
            # Nothing half done: no history, and the hub still serves.
            history = (await http.get("/api/v1/channels/c/history")).json()
            assert history["events"] == []


async def test_broker_down_local_subscribers_still_get_the_stored_event(tmp_path: Path) -> None:
    """A broker that stores (SQLite here) but cannot hand on still delivers on this node."""
    from tests.redis_support import redis_url
    from tidings.backends.redis_broker import RedisBroker
    from tidings.backends.sqlite import SQLiteStore
    from tidings.hub import Hub
    from tidings.settings import Settings

    broker = RedisBroker(redis_url(), SQLiteStore(tmp_path / "events.db"))
    async with running_hub(Hub(Settings(), broker=broker)) as served:

        async def down(*args: object) -> None:
            raise ConnectionError("broker down")

        broker._client.publish = down  # type: ignore[method-assign]
        async with websockets.connect(served.ws_url + "/ws?channel=local") as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            assert json.loads(await ws.recv())["type"] == "subscribed"
            async with httpx.AsyncClient(base_url=served.url) as http:
                response = await http.post("/api/v1/publish", json={"channel": "local", "data": 7})
                assert response.status_code == 503
                assert "stored" in response.json()["error"]["message"]
                history = (await http.get("/api/v1/channels/local/history")).json()
            (stored,) = history["events"]
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message == {"type": "event", "data": stored}
