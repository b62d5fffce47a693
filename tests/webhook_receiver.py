"""A webhook receiver for tests: a real HTTP server that answers as each path says and
records every request, so tests can await what arrives instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import serving


@dataclass
class Arrival:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Paths: ``/ok``; ``/flaky/<n>`` fails n times, then 200; ``/busy`` answers 429 with
    ``Retry-After: 1`` once, then 200; ``/gone`` 410; ``/slow`` waits until released;
    ``/error`` always 500 with ``{"error": "boom"}``."""

    port: int = 0
    arrivals: dict[str, list[Arrival]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    #: Answer every request 500 (a receiver that is down, but still seen).
    failing: bool = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait(self, path: str, count: int, timeout: float = 10) -> list[Arrival]:
        """The first ``count`` requests to ``path``, once they have come."""
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.arrivals[path]) >= count)
        return self.arrivals[path][:count]

    async def until(self, done: Callable[[], bool], timeout: float = 10) -> None:
        """Wait until ``done()`` holds, checked at each arrival."""
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(done)

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        seen = self.arrivals[path]
        async with self.arrived:
            seen.append(Arrival(time.time(), dict(request.headers), body))
            self.arrived.notify_all()
        if self.failing:
            return JSONResponse({"error": "down"}, 500)
        if path.startswith("/flaky/"):
            return JSONResponse({}, 500 if len(seen) <= int(path.rsplit("/", 1)[1]) else 200)
        if path == "/busy" and len(seen) == 1:
            return JSONResponse({}, 429, headers={"retry-after": "1"})
        if path == "/gone":
            return Response(status_code=410)
        if path == "/slow":
            await self.release.wait()
        if path == "/error":
            return JSONResponse({"error": "boom"}, 500)
        return JSONResponse({"ok": True})


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with serving(server) as port:
        receiver.port = port
        try:
            yield receiver
        finally:
            receiver.release.set()
