"""A private ``redis-server`` on a port that survives restarts, for runs that break Redis
on purpose: the chaos run (``tidings bench --mode chaos``) and the test suite.

Never used by the hub at run time.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tidings.bench.run import _free_port

__all__ = ["RedisServer"]

START_TIMEOUT = 10.0


class RedisServer:
    """A private ``redis-server`` on a port that survives restarts.

    Without ``data_dir`` nothing is persisted: a restart loses every key (channels start
    over with new epochs). With it, every write goes to an append-only file there, synced
    before Redis answers, so a killed and restarted server has everything it acknowledged.
    """

    def __init__(self, port: int | None = None, *, data_dir: Path | None = None) -> None:
        self.port = port or _free_port()
        self.data_dir = data_dir
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server; return once it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(
                    ["--appendonly", "no"]
                    if self.data_dir is None
                    else [
                        "--dir",
                        str(self.data_dir),
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                    ]
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()
        output: list[str] = []

        def drain() -> None:
            # Keep reading until the server exits, or a full pipe would block its logging.
            assert process.stdout is not None
            for line in process.stdout:
                if len(output) < 200:
                    output.append(line)
                if "Ready to accept connections" in line:
                    ready.set()

        self._process = process
        self._drain = threading.Thread(target=drain, name=f"redis-{self.port}", daemon=True)
        self._drain.start()
        if not ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("redis-server did not start: " + "".join(output[-5:]).strip())

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, not a shutdown) and wait until its port is
        free again."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        if self._drain is not None:
            self._drain.join(START_TIMEOUT)  # it ends at the pipe's end of file
        if process.stdout is not None:
            process.stdout.close()
        # Nothing announces a freed port: poll briefly, within a bound.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"port {self.port} still answers after redis-server was killed")

    def restart(self) -> None:
        """Kill the server and start it again on the same port (and data directory)."""
        self.stop()
        self.start()
