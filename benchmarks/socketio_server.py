"""Baseline: python-socketio (ASGI) under uvicorn, with the same publish endpoint.

Every client joins the room named by its ``channel`` query parameter on connect; a POST
to ``/api/v1/publish`` emits an ``event`` message with the event object to that room.
Needs ``pip install python-socketio`` (the ``bench`` extra); WebSocket transport only.

    python -m benchmarks.socketio_server --port 8002
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

try:
    import socketio
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("python-socketio is not installed: pip install 'tidings[bench]'")

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
_ids = itertools.count(1)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    await sio.enter_room(sid, query.get("channel", ["bench"])[0])


async def publish(request: Request) -> JSONResponse:
    body = await request.json()
    event = {
        "id": str(next(_ids)),
        "channel": body["channel"],
        "type": body.get("type", "message"),
        "data": body.get("data"),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    await sio.emit("event", event, room=body["channel"])
    return JSONResponse(event, status_code=201)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


routes = [Route("/api/v1/publish", publish, methods=["POST"]), Route("/health", health)]
app = socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=routes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
