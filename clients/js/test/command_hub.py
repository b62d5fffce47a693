"""A hub with in-process command handlers, for the JS client's command tests; with the
argument ``with_application=1``, also an application it forwards the other commands to
(``command_url``): ``app.echo`` answers,
``app.fail`` answers 500 ``{"error": "boom"}``, ``app.slow`` answers after the hub's
``command_timeout`` (1 s here).

``python command_hub.py PORT [SETTING=VALUE ...]`` serves it on 127.0.0.1:PORT (streams on
the native path, as ``tidings serve`` does) until SIGTERM.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tidings.errors import TidingsError
from tidings.hub import Hub
from tidings.identity import Identity
from tidings.server import HubServer, build_config
from tidings.settings import Settings


def build(settings: Settings) -> Hub:
    hub = Hub(settings)

    @hub.command("math.add")
    async def add(identity: Identity, args: dict[str, Any]) -> Any:
        return {"sum": args["a"] + args["b"], "client_id": identity.client_id}

    @hub.command("job.refuse")
    async def refuse(identity: Identity, args: dict[str, Any]) -> Any:
        raise TidingsError("the job is running", code="job_busy")

    @hub.command("job.slow")
    async def slow(identity: Identity, args: dict[str, Any]) -> Any:
        await asyncio.sleep(float(args.get("seconds", 3)))
        return "late"

    return hub


async def application(request: Request) -> JSONResponse:
    """The application behind ``command_url``."""
    call = await request.json()
    if call["name"] == "app.fail":
        return JSONResponse({"error": "boom"}, status_code=500)
    if call["name"] == "app.slow":
        await asyncio.sleep(3)
    return JSONResponse({"echo": call["args"], "via": "url"})


def serve_application() -> int:
    """Run the application on a free port, in a thread of its own; return the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/", application, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    port: int = sock.getsockname()[1]
    return port


def main() -> None:
    port = int(sys.argv[1])
    extra: dict[str, Any] = dict(item.split("=", 1) for item in sys.argv[2:])
    if extra.pop("with_application", None):
        extra["command_url"] = f"http://127.0.0.1:{serve_application()}/"
        extra["command_timeout"] = 1.0
    settings = Settings(port=port, log_level="warning", **extra)
    hub = build(settings)
    HubServer(build_config(hub, settings), hub).run()


if __name__ == "__main__":
    main()
