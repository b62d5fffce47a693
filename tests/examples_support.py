"""Running an example as its README says: a real process from the repository root, waited
for until it answers, stopped with SIGTERM and held to a clean exit."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def run_example(
    command: list[str],
    log_path: Path,
    *,
    ready: Callable[[], object],
    env: Mapping[str, str] | None = None,
    check_exit: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in the repository root, call ``ready()`` until it neither raises
    an ``httpx.TransportError`` nor returns ``False`` (a process has no event to await:
    it is polled, 20 s at most), yield the process, then stop it with SIGTERM and, with
    ``check_exit``, check that it exited cleanly (0, or -SIGTERM as recent uvicorn
    re-raises it) without a traceback."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.TransportError):
                if ready() is not False:
                    break
            assert time.monotonic() < deadline, "the example did not start in 20 s"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if check_exit:
        output = log_path.read_text()
        assert process.returncode in (0, -signal.SIGTERM), output
        assert "Traceback" not in output
