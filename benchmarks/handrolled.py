"""Baseline: the FastAPI "dict of sockets" manager that users hand-roll.

What the tutorials show and what tidings must beat: a ``ConnectionManager`` holding a
dict of WebSockets under an ``asyncio.Lock``, broadcasting with one sequential
``await ws.send_json(...)`` per socket; an SSE endpoint with one unbounded
``asyncio.Queue`` per client; an HTTP POST publish endpoint. It speaks just enough of
tidings' shapes (``/api/v1/publish``, the event object) for ``tidings bench`` to drive it.
It keeps no history, does no auth and is not for production.

    python -m benchmarks.handrolled --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse


class ConnectionManager:
    def __init__(self) -> None:
        self.sockets: dict[str, dict[str, WebSocket]] = {}
        self.queues: dict[str, dict[str, asyncio.Queue[dict[str, Any]]]] = {}
        self.lock = asyncio.Lock()

    async def connect(self, channel: str, ws: WebSocket) -> str:
        await ws.accept()
        key = uuid.uuid4().hex
        async with self.lock:
            self.sockets.setdefault(channel, {})[key] = ws
        return key

    async def disconnect(self, channel: str, key: str) -> None:
        async with self.lock:
            self.sockets.get(channel, {}).pop(key, None)

    async def broadcast(self, channel: str, event: dict[str, Any]) -> None:
        async with self.lock:
            dead = []
            for key, ws in self.sockets.get(channel, {}).items():
                try:
                    await ws.send_json(event)
                except Exception:  # a closed socket: drop it
                    dead.append(key)
            for key in dead:
                self.sockets[channel].pop(key, None)
            for queue in self.queues.get(channel, {}).values():
                queue.put_nowait(event)


manager = ConnectionManager()
app = FastAPI()
_ids = itertools.count(1)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/publish", status_code=201)
async def publish(request: Request) -> dict[str, Any]:
    body = await request.json()
    event = {
        "id": str(next(_ids)),
        "channel": body["channel"],
        "type": body.get("type", "message"),
        "data": body.get("data"),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    await manager.broadcast(body["channel"], event)
    return event


@app.websocket("/ws")
async def websocket_endpoint(ws: WebSocket, channel: str = Query(...)) -> None:
    key = await manager.connect(channel, ws)
    try:
        await ws.send_json({"type": "subscribed", "channel": channel})
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(channel, key)


@app.get("/api/v1/events")
async def sse_endpoint(channel: str = Query(...)) -> StreamingResponse:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    key = uuid.uuid4().hex
    manager.queues.setdefault(channel, {})[key] = queue

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                event = await queue.get()
                yield f"id: {event['id']}\ndata: {json.dumps(event)}\n\n"
        finally:
            manager.queues[channel].pop(key, None)

    return StreamingResponse(stream(), media_type="text/event-stream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
