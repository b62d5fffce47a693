"""Acceptance 1: publish over HTTP; an SSE client and a WebSocket client both receive it."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets
from httpx_sse import aconnect_sse

from tests.servers import RunningHub


async def test_publish_reaches_sse_and_websocket(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        async with aconnect_sse(http, "GET", "/api/v1/events?channel=demo") as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            assert source.response.headers["cache-control"] == "no-cache"
            assert source.response.headers["x-accel-buffering"] == "no"
            events = source.aiter_sse()
            async with websockets.connect(served.ws_url + "/ws?channel=demo") as ws:
                connected = json.loads(await ws.recv())
                assert connected["type"] == "connected"
                subscribed = json.loads(await ws.recv())
                assert subscribed["type"] == "subscribed"
                response = await http.post(
                    "/api/v1/publish",
                    json={"channel": "demo", "type": "greeting", "data": {"hi": 1}},
                )
                assert response.status_code == 201
                stored = response.json()
                assert stored["id"] and stored["channel"] == "demo" and stored["type"] == "greeting"
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert message == {"type": "event", "data": stored}
            async with asyncio.timeout(5):
                async for sse in events:
                    if sse.event == "greeting":
                        assert json.loads(sse.data) == stored
                        assert sse.id == stored["id"]
                        break
