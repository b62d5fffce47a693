"""Browser tests: Chromium driven by the Python ``playwright`` package, against real
``tidings serve`` processes.

They skip when Playwright or a Chromium binary is missing, unless
``TIDINGS_TEST_REQUIRE_BROWSER=1`` (CI), where that is a failure. No browser is ever
downloaded: the system's Chromium (Debian package ``chromium``) is used, or the one at
``TIDINGS_CHROMIUM``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REQUIRED = os.environ.get("TIDINGS_TEST_REQUIRE_BROWSER") == "1"


def chromium_path() -> str | None:
    candidates = [os.environ.get("TIDINGS_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and Path(c).exists()), None)


def unavailable(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"{why} (TIDINGS_TEST_REQUIRE_BROWSER=1)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    executable = chromium_path()
    if executable is None:
        unavailable("no Chromium found (apt-get install chromium, or set TIDINGS_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedHub:
    """A ``tidings serve`` subprocess that can be stopped and started again on its port."""

    port: int
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"tidings serve exited {self.process.returncode}: {stderr}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}health", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("tidings serve did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def connections(self, token: str | None = None) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.get(f"{self.url}api/v1/connections", headers=headers, timeout=5)
        response.raise_for_status()
        connections: list[dict[str, Any]] = response.json()["connections"]
        return connections


@contextlib.contextmanager
def serving(*args: str) -> Iterator[ServedHub]:
    hub = ServedHub(free_port(), args)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def served_hub() -> Iterator[ServedHub]:
    with serving() as hub:
        yield hub
