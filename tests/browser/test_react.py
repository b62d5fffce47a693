"""The React hooks in a real Chromium: ``useTidings`` shows the events of its channel, and
once it is unmounted the hub has no connection left; ``useCommand`` is pending, then holds
the application's result or its error.

React comes from ``clients/js/node_modules`` (``npm ci`` in clients/js), loaded as its
UMD build by a page served from clients/js by a small static server: no bundler.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import REQUIRED, ServedHub, serving

pytestmark = pytest.mark.browser

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


@pytest.fixture
def static_server() -> Iterator[str]:
    if not (CLIENT_DIR / "node_modules" / "react" / "umd").is_dir():
        message = "React is not installed: run `npm ci` in clients/js"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    handler = functools.partial(QuietHandler, directory=str(CLIENT_DIR))
    with in_thread(handler) as base:
        yield base + "/"


@contextlib.contextmanager
def in_thread(handler: Any) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1 from a thread; yield its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# WebSocket only: this page is on another origin than the hub, and the hub sends no CORS
# headers, so a fetch-based SSE stream is refused by the browser (docs/protocol.md).
@pytest.mark.parametrize("transport", ["websocket"])
def test_use_tidings_shows_events_and_leaves_no_connection(
    browser: Any, served_hub: ServedHub, static_server: str, transport: str
) -> None:
    from playwright.sync_api import expect

    channel = f"react-{transport}"
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with contextlib.ExitStack():
        try:
            page.goto(
                f"{static_server}test/react-page.html?hub={served_hub.url}&channel={channel}&transport={transport}"
            )
            expect(page.locator("#status")).to_have_text("connected", timeout=10_000)
            _wait_for(lambda: any(channel in c["channels"] for c in served_hub.connections()))
            for n in (1, 2):
                response = httpx.post(
                    f"{served_hub.url}api/v1/publish", json={"channel": channel, "data": {"n": n}}
                )
                assert response.status_code == 201, response.text
            expect(page.locator("#events li")).to_have_text(['{"n":1}', '{"n":2}'], timeout=5_000)

            page.get_by_role("button", name="Unmount").click()
            expect(page.locator("body")).to_have_attribute("data-unmounted", "yes")
            _wait_for(lambda: served_hub.connections() == [])
            assert errors == []
        finally:
            page.close()


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


class CommandApp(http.server.BaseHTTPRequestHandler):
    """The application behind ``--command-url``: ``math.add`` answers once the test lets
    it (so the page can be seen pending), ``app.fail`` refuses with a message."""

    release = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["name"] == "math.add":
            self.release.wait(10)
            status, answer = 200, {"sum": body["args"]["a"] + body["args"]["b"]}
        else:
            status, answer = 422, {"error": "the lights are off"}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


@pytest.fixture
def command_app() -> Iterator[str]:
    CommandApp.release.clear()
    with in_thread(CommandApp) as base:
        try:
            yield base + "/commands"
        finally:
            CommandApp.release.set()  # before the server stops: no handler is left waiting


def test_use_command_is_pending_then_gives_the_result_or_the_error(
    browser: Any, static_server: str, command_app: str
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with serving("--command-url", command_app) as hub:
        try:
            page.goto(f"{static_server}test/react-command-page.html?hub={hub.url}")
            add = page.locator("#add")
            add.get_by_role("button").click()
            expect(add.locator(".pending")).to_have_text("pending", timeout=5_000)
            expect(add.locator(".result")).to_have_text("")
            CommandApp.release.set()
            expect(add.locator(".result")).to_have_text('{"sum":5}', timeout=5_000)
            expect(add.locator(".pending")).to_have_text("idle")

            fail = page.locator("#fail")
            fail.get_by_role("button").click()
            expect(fail.locator(".error")).to_have_text(
                "command_failed: the lights are off", timeout=5_000
            )
            expect(fail.locator(".pending")).to_have_text("idle")
            expect(fail.locator(".result")).to_have_text("")
            assert errors == []
        finally:
            page.close()
