"""The hub nodes of the chaos run: ``tidings serve`` processes that a fault may SIGKILL
and start again on the same port. (Its Redis is a :class:`~tidings.bench.redis_server.
RedisServer` with an append-only file synced on every write, so a Redis killed and
restarted keeps history: it must cost the subscribers nothing. A Redis that loses its
data is another fault, with ``reset`` as the documented answer; tests/integration cover
it.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tidings.bench import procstat
from tidings.bench.run import _free_port

__all__ = ["Node"]


class Node:
    """One ``tidings serve`` process, restartable on its port."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.port = _free_port()
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.devnull)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def start(self, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "tidings", "serve",
                    "--port", str(self.port), "--node-id", self.name, *self.args,
                ],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def healthy(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until ``/health`` answers 200."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"node {self.name} exited: {tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not answer /health within {timeout:g} s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def rss(self) -> int:
        pid = self.pid
        return procstat.rss_bytes(pid) if pid is not None else 0
