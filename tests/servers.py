"""Real servers for tests: a hub under uvicorn on a free port, in the test's event loop,
or as a separate ``tidings serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from tidings.hub import Hub
from tidings.server import HubServer, build_config
from tidings.settings import Settings


@dataclass
class RunningHub:
    hub: Hub
    server: HubServer
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def free_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says so, and Nagle + delayed ACK adds 40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(server: uvicorn.Server) -> AsyncIterator[int]:
    """Run ``server`` on a free port of 127.0.0.1 until the block ends; yield the port."""
    sock = free_socket()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # uvicorn has no event to await for this
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await task
        sock.close()


#: The stream path of the test that runs now: set by the ``stream_path`` fixture.
STREAM_PATH = "native"


@contextlib.asynccontextmanager
async def running_hub(hub: Hub | None = None, **settings: Any) -> AsyncIterator[RunningHub]:
    """Serve a hub on a free port of 127.0.0.1 until the block ends.

    Streams are served on the path of the ``stream_path`` fixture (see tests/conftest.py):
    natively, as under ``tidings serve``, unless a test marked ``streams`` runs on the ASGI
    endpoints, which an embedded hub uses. A ``data_plane`` setting given here wins.
    """
    path = settings.pop("data_plane", None) or STREAM_PATH
    hub = hub or Hub(Settings(**settings))
    served = hub.settings.model_copy(update={"data_plane": path})
    # The port is only known once bound; uvicorn's config port is not used with sockets=.
    server = HubServer(build_config(hub, served, log_level="warning"), hub)
    async with serving(server) as port:
        yield RunningHub(hub, server, port)


def free_port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


@dataclass
class HubProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` and wait for the exit code. A process that does not exit in time
        is killed, and the failure shows what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            out = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
            raise AssertionError(
                f"tidings serve did not exit within {timeout} s of signal {sig}; "
                f"it printed:\n{out[-4000:]}"
            ) from None

    def close(self) -> None:
        """Kill the process if it still runs, reap it, and close its output pipe (an
        open pipe left to the garbage collector is a ResourceWarning, an error here)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_process(
    *args: str, port: int | None = None, env: dict[str, str] | None = None
) -> HubProcess:
    """Start ``tidings serve`` in its own process and wait until ``/health`` answers."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tidings", "serve", "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"tidings serve exited with {process.returncode}: {out}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return HubProcess(process, port)
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("tidings serve did not become healthy in 20 s")


@contextlib.asynccontextmanager
async def running_app(app: Any) -> AsyncIterator[int]:
    """Serve any ASGI app (e.g. a user's FastAPI app that embeds a hub) on a free port of
    127.0.0.1, with its lifespan, until the block ends; yield the port."""
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, log_level="warning", timeout_graceful_shutdown=2
    )
    async with serving(uvicorn.Server(config)) as port:
        yield port


def without_node_label(metrics: str) -> str:
    """``/metrics`` text with each sample's ``node`` label removed, so that a test can
    look for a sample by its other labels whatever the hub's node id."""
    stripped = re.sub(r'node="[^"]*"', "", metrics)
    return stripped.replace("{,", "{").replace(",}", "}").replace(",,", ",").replace("{}", "")
