"""Cross-origin pages in a real Chromium (SPEC §6, docs/security.md "Origins"): with no
list, a page on localhost (another port: another origin) opens an EventSource and calls
the API out of the box; an explicit list is exact, and a listed origin may send cookies."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import serving

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><meta charset="utf-8"><title>another origin</title>
<script>
window.got = [];
window.failed = false;
window.ready = false;
window.follow = (hub) => {
  const url = hub + "api/v1/events?channel=cors";
  const source = new EventSource(url, { withCredentials: window.credentials });
  source.addEventListener("position", () => { window.ready = true; });
  source.onmessage = (m) => window.got.push(JSON.parse(m.data).data);
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) window.failed = true; };
};
window.publish = async (hub) => {
  const response = await fetch(hub + "api/v1/publish", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ channel: "cors", data: "from the page" }),
    credentials: window.credentials ? "include" : "same-origin",
  });
  return response.status;
};
</script>"""


@contextlib.contextmanager
def _page_on(browser: Any, *, credentials: bool = False) -> Iterator[tuple[Any, str]]:
    """A page served from ``http://localhost:<port>``: another origin than the hub's
    ``127.0.0.1``. A real server on loopback, as a developer's is: Chromium lets a page
    reach loopback addresses only from the loopback address space."""
    body = (f"<script>window.credentials = {str(credentials).lower()};</script>" + PAGE).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://localhost:{server.server_address[1]}"
    page = browser.new_page()
    try:
        page.goto(f"{origin}/page.html")
        yield page, origin
    finally:
        page.close()
        server.shutdown()
        server.server_close()


def _publish(hub_url: str) -> None:
    response = httpx.post(f"{hub_url}api/v1/publish", json={"channel": "cors", "data": 1})
    assert response.status_code == 201


def _follows(page: Any, hub_url: str) -> None:
    """The page's EventSource opens and receives an event published after it."""
    page.evaluate("hub => window.follow(hub)", hub_url)
    page.wait_for_function("() => window.ready || window.failed", timeout=10_000)
    assert page.evaluate("window.ready"), "the EventSource was refused"
    _publish(hub_url)
    page.wait_for_function("() => window.got.length === 1", timeout=10_000)
    assert page.evaluate("window.got") == [1]


def test_a_localhost_page_works_out_of_the_box(browser: Any) -> None:
    with serving() as hub, _page_on(browser) as (page, _):  # no --allowed-origin
        _follows(page, hub.url)
        # The API too: a JSON POST is preflighted, and the preflight is answered.
        assert page.evaluate("hub => window.publish(hub)", hub.url) == 201
        page.wait_for_function("() => window.got.length === 2", timeout=10_000)


def test_an_explicit_list_is_exact(browser: Any) -> None:
    with (
        serving("--allowed-origin", "https://app.example") as hub,
        _page_on(browser) as (page, _),
    ):
        page.evaluate("hub => window.follow(hub)", hub.url)
        page.wait_for_function("() => window.failed", timeout=10_000)
        assert hub.connections() == []
        with pytest.raises(Exception, match="Failed to fetch"):
            page.evaluate("hub => window.publish(hub)", hub.url)


def test_a_listed_origin_may_send_credentials(browser: Any) -> None:
    with _page_on(browser, credentials=True) as (page, origin):
        with serving("--allowed-origin", origin) as hub:
            _follows(page, hub.url)
            assert page.evaluate("hub => window.publish(hub)", hub.url) == 201
