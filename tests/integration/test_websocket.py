"""WebSocket protocol behaviour (SPEC §5) over real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.servers import RunningHub, running_hub

pytestmark = pytest.mark.streams


async def _recv(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


async def test_connected_comes_first_with_ids(served: RunningHub) -> None:
    async with websockets.connect(served.ws_url + "/ws/events") as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "connected"
        assert first["connection_id"] in served.hub.connections
        assert first["client_id"] is None
        assert first["timestamp"].endswith("Z")


async def test_ping_pong_both_ways_and_stale_close() -> None:
    async with running_hub(ping_interval=0.2) as served:
        async with websockets.connect(served.ws_url + "/ws") as ws:
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            pong = await _recv(ws, "pong")
            assert pong["id"] == 7
            # Answer three server pings: the connection stays open past two intervals.
            for _ in range(3):
                ping = await _recv(ws, "ping")
                assert ping["timestamp"].endswith("Z")
                await ws.send(json.dumps({"type": "pong"}))
            # Now go silent: closed as stale with 4006 within a few intervals.
            async with asyncio.timeout(3):
                disconnect = await _recv(ws, "disconnect")
                assert disconnect["reason"] == "stale"
                assert disconnect["reconnect"] is True
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 4006


async def test_subscribe_unsubscribe_and_errors(served: RunningHub) -> None:
    hub = served.hub
    async with websockets.connect(served.ws_url + "/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "a", "id": "s1"}))
        subscribed = await _recv(ws, "subscribed")
        assert subscribed == {
            "type": "subscribed",
            "channel": "a",
            "recovered": False,
            "position": subscribed["position"],
            "id": "s1",
        }
        await ws.send(json.dumps({"type": "unsubscribe", "channel": "a", "id": "u1"}))
        assert await _recv(ws, "unsubscribed") == {
            "type": "unsubscribed",
            "channel": "a",
            "id": "u1",
        }
        await hub.publish("a", "x", 1)  # not delivered any more
        await ws.send(json.dumps({"type": "unsubscribe", "channel": "a", "id": "u2"}))
        error = await _recv(ws, "error")
        assert error["code"] == "not_subscribed"
        assert error["id"] == "u2"
        await ws.send(json.dumps({"type": "ping", "id": "after"}))
        assert (await _recv(ws, "pong"))["id"] == "after"  # nothing else arrived in between


async def test_publish_over_websocket_is_acknowledged_and_delivered(served: RunningHub) -> None:
    async with websockets.connect(served.ws_url + "/ws?channel=chat") as ws:
        await _recv(ws, "subscribed")
        await ws.send(
            json.dumps(
                {"type": "publish", "channel": "chat", "event": "said", "data": "hi", "id": 3}
            )
        )
        # The publisher is a subscriber too: its copy of the event may come before the ack.
        got: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(got) < 2:
                message = json.loads(await ws.recv())
                got[message["type"]] = message
        published, event = got["published"], got["event"]
        assert published["id"] == 3
        assert event["data"] == published["event"]
        assert event["data"]["type"] == "said"
        assert event["data"]["data"] == "hi"


async def test_type_filter_on_subscribe(served: RunningHub) -> None:
    async with websockets.connect(served.ws_url + "/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "t", "types": ["keep"]}))
        await _recv(ws, "subscribed")
        for kind in ("skip", "keep", "skip", "keep"):
            await served.hub.publish("t", kind, kind)
        assert (await _recv(ws, "event"))["data"]["type"] == "keep"
        assert (await _recv(ws, "event"))["data"]["type"] == "keep"


async def test_max_connection_age_closes_with_reconnect_code() -> None:
    async with running_hub(max_connection_age=0.3) as served:
        async with websockets.connect(served.ws_url + "/ws") as ws:
            disconnect = await _recv(ws, "disconnect")
            assert disconnect["reason"] == "max_age"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4007


async def test_shutdown_tells_every_websocket(served: RunningHub) -> None:
    async with websockets.connect(served.ws_url + "/ws?channel=a") as ws:
        await _recv(ws, "subscribed")
        closing = asyncio.create_task(served.hub.close_connections("server_shutdown", grace=2))
        disconnect = await _recv(ws, "disconnect")
        assert disconnect == {
            "type": "disconnect",
            "reason": "server_shutdown",
            "code": 4000,
            "reconnect": True,
        }
        await closing
        assert not served.hub.connections


async def test_a_receiving_client_is_pinged_and_kept_while_events_flow() -> None:
    async with running_hub(ping_interval=0.2) as served:
        async with websockets.connect(served.ws_url + "/ws?channel=busy") as ws:
            await _recv(ws, "subscribed")
            loop = asyncio.get_running_loop()
            pings = events = 0
            publisher = asyncio.create_task(_publish_every(served, 0.05, 40))
            deadline = loop.time() + 2.5
            async with asyncio.timeout(5):
                while not (publisher.done() and events == 40):
                    message = json.loads(await ws.recv())
                    assert message["type"] != "disconnect", message
                    if message["type"] == "ping":
                        pings += 1
                        await ws.send(json.dumps({"type": "pong"}))
                    elif message["type"] == "event":
                        events += 1
            assert loop.time() < deadline
            assert pings >= 5  # pinged on schedule although the stream never went idle


async def _publish_every(served: RunningHub, period: float, count: int) -> None:
    for n in range(count):
        await served.hub.publish("busy", "tick", n)
        await asyncio.sleep(period)  # the pace of the traffic is what is under test


async def test_an_unknown_websocket_path_is_a_404_not_a_403(served: RunningHub) -> None:
    # A 403 reads as an origin refusal; the path is what is wrong.
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(served.ws_url + "/ws/nope"):
            pass
    response = refused.value.response
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "not_found"


async def test_a_close_reason_is_cut_at_a_utf8_boundary_within_123_bytes() -> None:
    from tidings.streams.admission import close_reason

    text = "é" * 100  # 200 bytes of UTF-8
    cut = close_reason(text)
    assert len(cut.encode()) == 122 and cut == "é" * 61
    assert close_reason("x" * 200) == "x" * 123
    async with running_hub(jwt_secret="s" * 40) as served:
        # A refusal's reason (401: "a token or API key is required") is whole when short.
        async with websockets.connect(served.ws_url + "/ws") as ws:
            assert json.loads(await ws.recv())["type"] == "error"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_reason == "a token or API key is required"
