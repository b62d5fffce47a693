"""Acceptance: a subscriber receives 500 events, every one exactly once and in order,
while the hub (``tidings serve`` with the SQLite store) is restarted twice on the same
port in the middle of a continuous stream of HTTP publishes — over both transports."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.servers import HubProcess, free_port, start_process
from tidings.client import Backoff, Client, Event, Status, StatusChange

pytestmark = pytest.mark.streams

CHANNEL = "orders"
TOTAL = 500
RESTART_AFTER = (150, 330)


async def _serve(processes: list[HubProcess], db: Path, port: int) -> HubProcess:
    process = await asyncio.to_thread(
        start_process, "--store", f"sqlite:///{db}", "--history-size", "2000", port=port
    )
    processes.append(process)
    return process


async def _publish_all(http: httpx.AsyncClient, published: list[int]) -> None:
    """Publish 0..TOTAL-1, retrying through restarts; the idempotency key makes a retry of
    a publish whose answer was lost a no-op."""
    for n in range(TOTAL):
        while True:
            try:
                response = await http.post(
                    "/api/v1/publish",
                    json={
                        "channel": CHANNEL,
                        "type": "order",
                        "data": {"n": n},
                        "idempotency_key": f"order-{n}",
                    },
                )
            except httpx.TransportError:
                await asyncio.sleep(0.02)  # the hub is restarting
                continue
            if response.status_code == 201:
                break
            assert response.status_code == 503, response.text
            await asyncio.sleep(0.02)
        published.append(n)
        await asyncio.sleep(0.002)  # a steady stream, not one burst


async def _restart_twice(
    processes: list[HubProcess], db: Path, port: int, published: list[int]
) -> None:
    for threshold, sig in zip(RESTART_AFTER, (signal.SIGTERM, signal.SIGKILL), strict=True):
        while len(published) < threshold:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(processes[-1].stop, sig)
        await _serve(processes, db, port)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_500_events_exactly_once_across_two_restarts(
    tmp_path: Path, processes: list[HubProcess], transport: str
) -> None:
    db = tmp_path / "t.db"
    port = free_port()
    await _serve(processes, db, port)
    url = f"http://127.0.0.1:{port}"
    statuses: list[StatusChange] = []
    backoff = Backoff(initial=0.05, factor=2.0, max=0.5, jitter=0.5, attempts=100)
    received: list[Event] = []
    published: list[int] = []

    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as http,
        Client(url, transport=transport, backoff=backoff, on_status=statuses.append) as client,
    ):
        subscription = client.subscribe(CHANNEL)
        await subscription.ready()

        async def consume() -> None:
            async for event in subscription:
                received.append(event)
                if len(received) == TOTAL:
                    return

        consumer = asyncio.create_task(consume())
        restarts = asyncio.create_task(_restart_twice(processes, db, port, published))
        await _publish_all(http, published)
        await restarts
        async with asyncio.timeout(30):
            await consumer
        response = await http.get(f"/api/v1/channels/{CHANNEL}/history", params={"limit": 2000})
        stored = response.json()["events"]

    assert len(processes) == 3
    assert [event.data["n"] for event in received] == list(range(TOTAL))
    assert [event.id for event in received] == [event["id"] for event in stored]
    assert [s.status for s in statuses].count(Status.CONNECTED) >= 3
    assert Status.FAILED not in [s.status for s in statuses]
