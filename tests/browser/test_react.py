"""``useTidings`` in a real Chromium: a component shows the events of its channel, and
once it is unmounted the hub has no connection left.

React comes from ``clients/js/node_modules`` (``npm ci`` in clients/js), loaded as its
UMD build by a page served from clients/js by a small static server: no bundler.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import REQUIRED, ServedHub

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
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
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
