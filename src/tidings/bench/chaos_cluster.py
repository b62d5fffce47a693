"""The hub nodes of the chaos run: ``tidings serve`` processes that a fault may SIGKILL
and start again on the same port. (Its Redis is a :class:`~tidings.bench.redis_server.
RedisServer` with an append-only file synced on every write, so a Redis killed and
restarted keeps history: it must cost the subscribers nothing. A Redis that loses its
data is another fault, with ``reset`` as the documented answer; tests/integration cover
it.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tidings.bench import procstat
from tidings.bench.run import _free_port, _wait_healthy

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
        """Wait until ``/health`` answers 200 (raise with the log's tail if it exits)."""
        assert self.process is not None
        await _wait_healthy(
            self.process,
            self.port,
            "/health",
            timeout=timeout,
            output=lambda: self.log.read_text(errors="replace"),
        )

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
