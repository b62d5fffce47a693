"""Acceptance 4: a client that never reads does not delay the others, is disconnected
with ``slow_consumer``, and the hub's memory stays bounded while it is stuck. And the
``drop`` policy: oldest events dropped, ``reset`` with reason ``dropped``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import pytest
import websockets

from tests.servers import RunningHub, running_hub

pytestmark = pytest.mark.streams

PAYLOAD = "x" * 4000


def _stuck_socket(port: int, request: bytes) -> socket.socket:
    """A client that sends ``request`` and then never reads a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def _ws_upgrade(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def _wait_for_connections(served: RunningHub, count: int) -> None:
    async with asyncio.timeout(5):
        while len(served.hub.connections) < count:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(_ws_upgrade("/ws?channel=load"), id="websocket"),
        pytest.param(b"GET /api/v1/events?channel=load HTTP/1.1\r\nHost: t\r\n\r\n", id="sse"),
    ],
)
async def test_stuck_client_is_cut_off_and_others_keep_their_latency(request_bytes: bytes) -> None:
    async with running_hub(queue_size=50, queue_bytes=256 * 1024) as served:
        hub = served.hub
        async with websockets.connect(served.ws_url + "/ws?channel=load") as healthy:
            assert json.loads(await healthy.recv())["type"] == "connected"
            assert json.loads(await healthy.recv())["type"] == "subscribed"
            (healthy_id,) = hub.connections
            stuck = _stuck_socket(served.port, request_bytes)
            try:
                await _wait_for_connections(served, 2)
                (stuck_conn,) = (c for c in hub.connections.values() if c.id != healthy_id)
                latencies = []
                peak_frames = peak_bytes = 0
                async with asyncio.timeout(30):
                    for n in range(2000):
                        sent = time.perf_counter()
                        await hub.publish("load", "tick", {"n": n, "pad": PAYLOAD})
                        outbox = stuck_conn.session.outbox
                        peak_frames = max(peak_frames, len(outbox))
                        peak_bytes = max(peak_bytes, outbox.nbytes)
                        message = json.loads(await healthy.recv())
                        while message["type"] != "event":
                            message = json.loads(await healthy.recv())
                        latencies.append(time.perf_counter() - sent)
                        assert message["data"]["data"]["n"] == n
                        if hub.counters.slow_consumer_disconnects:
                            break
                    while stuck_conn.id in hub.connections:
                        await asyncio.sleep(0.01)  # the transport ends on its own task
                assert hub.counters.slow_consumer_disconnects == 1
                assert stuck_conn.session.close_reason == "slow_consumer"
                # Memory stayed bounded by the queue limits while the client was stuck.
                assert peak_frames <= 50
                assert peak_bytes <= 256 * 1024
                latencies.sort()
                assert latencies[len(latencies) * 99 // 100] < 0.25, latencies[-5:]
                # The healthy client still works after the stuck one is gone.
                event = await hub.publish("load", "tick", {"n": -1})
                message = json.loads(await asyncio.wait_for(healthy.recv(), 5))
                assert message["data"]["id"] == event.id
            finally:
                stuck.close()


async def test_drop_policy_sends_reset_and_keeps_the_connection() -> None:
    async with running_hub(queue_size=20, slow_consumer="drop") as served:
        hub = served.hub
        async with websockets.connect(served.ws_url + "/ws?channel=d", max_queue=1) as slow:
            assert json.loads(await slow.recv())["type"] == "connected"
            assert json.loads(await slow.recv())["type"] == "subscribed"
            conn = next(iter(hub.connections.values()))
            async with asyncio.timeout(30):
                n = 0
                while not conn.session.dropped:
                    await hub.publish("d", "tick", {"n": n, "pad": PAYLOAD})
                    n += 1
                    await asyncio.sleep(0)
                assert len(conn.session.outbox) <= 20 * 2
                last = await hub.publish("d", "tick", {"n": "last"})
                messages = []
                while True:
                    message = json.loads(await slow.recv())
                    messages.append(message)
                    if message["type"] == "event" and message["data"]["id"] == last.id:
                        break
            kinds = [m["type"] for m in messages]
            assert "reset" in kinds
            reset = messages[kinds.index("reset")]
            assert reset["channel"] == "d"
            assert reset["reason"] == "dropped"
            assert conn.id in hub.connections  # not disconnected
            numbers = [m["data"]["data"]["n"] for m in messages if m["type"] == "event"]
            assert len(numbers) < n + 1  # some were dropped
            ints = [x for x in numbers if isinstance(x, int)]
            assert ints == sorted(ints)  # what was kept is still in order
            assert hub.counters.slow_consumer_disconnects == 0
