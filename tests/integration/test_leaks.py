"""Acceptance: 1,000 connect/disconnect cycles leave no connection, subscription, task
or queue behind.

SSE and WebSocket clients, each following a few channels with events in flight, leave
politely (WebSocket close handshake, end of the HTTP response) or abruptly (a TCP reset
with frames still queued for them, or in the middle of the handshake). Afterwards the
hub's own registry, ``/api/v1/connections``, ``/metrics`` and the event loop's task
list must be back where they were before the first cycle.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection

from tests.servers import RunningHub, running_hub, without_node_label
from tidings.connection import Connection
from tidings.core.session import Session

pytestmark = pytest.mark.streams

CYCLES = 1000
BATCH = 50
CHANNELS = [f"leak:{n}" for n in range(4)]


def _reset_on_close(sock: Any) -> None:
    """Make closing ``sock`` send a TCP RST instead of a FIN: an abrupt disconnect."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _channels(n: int) -> list[str]:
    return [CHANNELS[n % 4], CHANNELS[(n + 1) % 4]]


async def _ws_until(ws: ClientConnection, wanted: Callable[[dict[str, Any]], bool]) -> None:
    while not wanted(json.loads(await ws.recv())):
        pass


async def _ws_cycle(running: RunningHub, n: int, *, polite: bool) -> None:
    first, second = _channels(n)
    third = CHANNELS[(n + 2) % 4]
    url = f"{running.ws_url}/ws?channel={first}&channel={second}"
    # max_queue=None: a client with many unread messages would otherwise stop reading
    # the socket and could not see the server's close frame (a client-side stall).
    ws = await websockets.connect(url, open_timeout=10, close_timeout=5, max_queue=None)
    try:
        # Other cycles publish on the same channels: events may arrive in between.
        assert json.loads(await ws.recv())["type"] == "connected"
        await _ws_until(ws, lambda m: m["type"] == "subscribed" and m["channel"] == second)
        await ws.send(json.dumps({"type": "subscribe", "channel": third, "id": n}))
        await _ws_until(ws, lambda m: m["type"] == "subscribed" and m["id"] == n)
        # Events in flight: published to this client, some unread when it leaves.
        stored = await running.hub.publish(third, "tick", {"n": n})
        await _ws_until(ws, lambda m: m["type"] == "event" and m["data"] == stored.to_dict())
        for channel in (first, second, third):
            await running.hub.publish(channel, "tick", {"n": n, "unread": True})
        if polite:
            await ws.send(json.dumps({"type": "unsubscribe", "channel": first, "id": "u"}))
            await ws.close()
        else:
            _reset_on_close(ws.transport.get_extra_info("socket"))
            ws.transport.abort()
    finally:
        await ws.close()  # no-op once closed; a failed assertion must not leak a client


async def _sse_cycle(running: RunningHub, http: httpx.AsyncClient, n: int, *, polite: bool) -> None:
    first, second = _channels(n)
    url = f"/api/v1/events?channel={first}&channel={second}"
    async with aconnect_sse(http, "GET", url) as source:
        assert source.response.status_code == 200
        events = source.aiter_sse()
        # The id-only frame comes once both subscriptions are made.
        while not (await anext(events)).id:
            pass
        stored = await running.hub.publish(second, "tick", {"n": n})
        mine = stored.to_dict()
        while (frame := await anext(events)).event != "tick" or json.loads(frame.data) != mine:
            pass
        for channel in (first, second):
            await running.hub.publish(channel, "tick", {"n": n, "unread": True})
        if not polite:
            stream = source.response.extensions["network_stream"]
            _reset_on_close(stream.get_extra_info("socket"))
    # Leaving the block closes the response unread: the connection is dropped (a FIN,
    # or a RST for the abrupt ones).


async def _raw_abort(running: RunningHub, n: int, *, websocket: bool) -> None:
    """Send a stream request and reset the connection before reading anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    first, second = _channels(n)
    if websocket:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws?channel={first}&channel={second} HTTP/1.1\r\nHost: t\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    else:
        request = f"GET /api/v1/events?channel={first}&channel={second} HTTP/1.1\r\nHost: t\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    if n % 2:
        # Half of them wait until the server has answered, so the stream is running.
        await reader.readuntil(b"\r\n\r\n")
    _reset_on_close(writer.get_extra_info("socket"))
    writer.transport.abort()


async def _cycle(running: RunningHub, http: httpx.AsyncClient, n: int) -> bool:
    """One connect/disconnect cycle; True when it was a full stream (hub-registered)."""
    kind = n % 6
    async with asyncio.timeout(20):
        if kind == 0:
            await _ws_cycle(running, n, polite=True)
        elif kind == 1:
            await _ws_cycle(running, n, polite=False)
        elif kind == 2:
            await _sse_cycle(running, http, n, polite=True)
        elif kind == 3:
            await _sse_cycle(running, http, n, polite=False)
        else:
            await _raw_abort(running, n, websocket=kind == 4)
            return False
    return True


async def _wait_until(
    predicate: Callable[[], bool], what: str | Callable[[], str], timeout: float = 10
) -> None:
    # Transports end on their own schedule after the peer left and the hub has no event
    # for "everything is released", so poll, with a bound.
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        shown = what if isinstance(what, str) else what()
        raise AssertionError(f"not released within {timeout} s: {shown}") from None


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} missing from /metrics")


def _live(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def _task_names() -> list[str]:
    return sorted(task.get_name() + ": " + repr(task.get_coro()) for task in asyncio.all_tasks())


async def test_connect_disconnect_cycles_leave_nothing_behind() -> None:
    async with running_hub(connection_rate=1_000_000) as running:
        hub = running.hub
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=10)
        async with (
            httpx.AsyncClient(base_url=running.url, timeout=10, limits=limits) as http,
            httpx.AsyncClient(base_url=running.url, timeout=10) as admin,
        ):
            # Warm up every path once, then take the baseline.
            for n in range(6):
                await _cycle(running, http, n)
            await _wait_until(lambda: not hub.connections, "warm-up connections")
            assert (await admin.get("/api/v1/connections")).json() == {"connections": []}
            assert hub.started
            baseline = len(asyncio.all_tasks())
            baseline_names = _task_names()
            opened_before = hub.counters.connections_opened

            started = time.monotonic()
            full = 0
            for offset in range(0, CYCLES, BATCH):
                async with asyncio.TaskGroup() as group:
                    batch = [
                        group.create_task(_cycle(running, http, n))
                        for n in range(offset, min(offset + BATCH, CYCLES))
                    ]
                full += sum(task.result() for task in batch)
            elapsed = time.monotonic() - started

            # The cycles really ran through the hub.
            assert full == sum(1 for n in range(CYCLES) if n % 6 < 4)
            assert hub.counters.connections_opened - opened_before >= full
            assert hub.counters.published >= full * 2

            await _wait_until(lambda: not hub.connections, "hub.connections")
            await _wait_until(lambda: not hub.fanout.subscribers, "channel subscribers")
            assert hub.subscriptions_count() == 0
            assert hub.channel_stats() == []
            # Per-channel ordering state goes with the channel's last local subscriber.
            assert hub.fanout.sequencer.channels() == []
            await _wait_until(
                lambda: len(asyncio.all_tasks()) <= baseline,
                lambda: f"tasks (baseline {baseline_names}, now {_task_names()})",
            )
            assert len(asyncio.all_tasks()) == baseline, _task_names()

            response = await admin.get("/api/v1/connections")
            assert response.status_code == 200
            assert response.json() == {"connections": []}
            channels = (await admin.get("/api/v1/channels")).json()["channels"]
            assert [c for c in channels if c["subscribers"]] == []  # history stays; no one follows
            metrics = without_node_label((await admin.get("/metrics")).text)
            assert _metric(metrics, 'tidings_connections{transport="sse"}') == 0
            assert _metric(metrics, 'tidings_connections{transport="websocket"}') == 0
            assert _metric(metrics, "tidings_subscriptions") == 0
            assert _metric(metrics, "tidings_channels") == 0
            assert _metric(metrics, "tidings_queued_frames") == 0
            assert _metric(metrics, "tidings_connections_opened_total") >= full

            # Nothing holds on to a connection or its session (and so its queue).
            assert _live(Connection) == 0
            assert _live(Session) == 0

            # And the hub still serves.
            async with websockets.connect(f"{running.ws_url}/ws?channel=after") as ws:
                assert json.loads(await ws.recv())["type"] == "connected"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                stored = await hub.publish("after", "tick", {"ok": True})
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["data"] == (
                    stored.to_dict()
                )
            print(f"{CYCLES} cycles in {elapsed:.1f} s")
