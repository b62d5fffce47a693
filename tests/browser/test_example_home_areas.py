"""Scenario 4's HTML test client in a real Chromium: the page served by
``examples/home_areas`` loads the hub's JS client from ``/realtime/static/tidings.js``,
connects with a token from the app, shows area events as the app emits them, and ends
in ``failed`` (token_revoked) once the client is unpaired."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import free_port
from tests.examples_support import run_example

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home_areas(tmp_path: Path) -> Iterator[str]:
    """``python examples/home_areas/app.py``, as its README runs it; its base URL."""
    port = free_port()
    env = {**os.environ, "HOME_AREAS_DB": str(tmp_path / "home.db"), "HOME_AREAS_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    with run_example(
        [sys.executable, "examples/home_areas/app.py"],
        tmp_path / "server.log",
        env=env,
        ready=lambda: httpx.get(f"{base}/realtime/health", timeout=1).status_code == 200,
        check_exit=False,
    ):
        yield base


def test_page_shows_area_events_then_token_revoked(browser: Any, home_areas: str) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        page.goto(f"{home_areas}/?client=panel-1")
        body = page.locator("body")
        expect(body).to_have_attribute("data-status", "connected", timeout=10_000)
        events = page.locator("#events li")

        # The page's own form: an area for this client, announced to everyone.
        page.fill("#area-name", "Kitchen")
        page.click("#add-area button")
        expect(events.first).to_have_attribute("data-type", "area_added", timeout=5_000)
        expect(events.first).to_contain_text('"name":"Kitchen"')

        # Emitted by the app's API: only to clients that have the area (this page does).
        with httpx.Client(base_url=home_areas, timeout=5) as http:
            assert http.patch("/api/areas/1", json={"name": "Big kitchen"}).status_code == 200
            expect(events.first).to_have_attribute("data-type", "area_updated", timeout=5_000)
            expect(events.first).to_contain_text("Big kitchen")
            assert http.post("/api/areas/1/disable").status_code == 200
            expect(events.first).to_have_attribute("data-type", "area_disabled", timeout=5_000)

            # Unpaired: the event arrives, then the disconnect, which is final.
            assert http.delete("/api/clients/panel-1").status_code == 204
        expect(events.first).to_have_attribute("data-type", "token_revoked", timeout=5_000)
        expect(body).to_have_attribute("data-status", "failed", timeout=5_000)
        expect(page.locator("#status")).to_contain_text("token_revoked")
        expect(events).to_have_count(4)
    finally:
        page.close()
