"""Acceptance 3 (fan-out): 100 concurrent WebSocket clients each receive every one of
1,000 events, in order, none missing, none doubled."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.servers import RunningHub

pytestmark = pytest.mark.streams


async def _subscriber(url: str, ready: asyncio.Event, counter: list[int], total: int) -> list[int]:
    received: list[int] = []
    async with websockets.connect(url, max_queue=None) as ws:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "subscribed":
                counter[0] += 1
                if counter[0] == total:
                    ready.set()
            elif message["type"] == "event":
                received.append(message["data"]["data"])
                if message["data"]["data"] == 999:
                    return received


async def test_hundred_clients_get_all_thousand_events_in_order(served: RunningHub) -> None:
    clients = 100
    ready = asyncio.Event()
    counter = [0]
    url = served.ws_url + "/ws?channel=fan"
    tasks = [asyncio.create_task(_subscriber(url, ready, counter, clients)) for _ in range(clients)]
    async with asyncio.timeout(60):
        await ready.wait()
        async with httpx.AsyncClient(base_url=served.url) as http:
            for start in range(0, 1000, 100):
                batch = [{"channel": "fan", "data": n} for n in range(start, start + 100)]
                response = await http.post("/api/v1/publish", json={"events": batch})
                assert response.status_code == 201
        results = await asyncio.gather(*tasks)
    expected = list(range(1000))
    for received in results:
        assert received == expected
    assert served.hub.delivered_total() == clients * 1000
