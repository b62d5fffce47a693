"""The dashboard in a real Chromium against a real ``tidings serve``: status turns green,
an event published through the form shows in the feed, the status turns yellow while the
hub is down and green again once it is back on the same port. Saves docs/dashboard.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ServedHub, serving

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


def test_dashboard_status_publish_and_reconnect(browser: Any, served_hub: ServedHub) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(served_hub.url)
        status = page.get_by_role("status").first
        expect(status).to_have_attribute("data-status", "connected", timeout=10_000)
        expect(status).to_have_text("connected")

        page.get_by_label("Channel", exact=True).first.fill("demo")
        page.get_by_label("Type", exact=True).fill("greeting")
        page.get_by_label("Data (JSON)").fill('{"hello": "browser"}')
        page.get_by_role("button", name="Publish").click()
        expect(page.locator("#pub-result")).to_contain_text("published", timeout=5_000)
        item = page.locator("#feed li").first
        expect(item).to_contain_text('{"hello":"browser"}', timeout=5_000)
        expect(item).to_contain_text("greeting")
        expect(item).to_contain_text("demo")

        # The channel list and connection table pick up this page's subscription.
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#history-table tbody tr")).to_have_count(1, timeout=5_000)
        expect(page.locator("#connections-table")).to_contain_text("(this page)", timeout=10_000)
        # Each row names the node holding the connection (every node's are listed).
        listed = httpx.get(f"{served_hub.url}api/v1/connections").json()["connections"]
        this_page = page.locator("#connections-table tbody tr", has_text="(this page)")
        expect(this_page).to_contain_text(listed[0]["node"])
        expect(page.locator("#connections-note")).to_contain_text("on 1 node(s)")
        expect(page.locator("#channels-table")).to_contain_text("demo", timeout=10_000)
        # A channel with history and no subscriber is listed, with its length (#12.17),
        # as soon as it changes: well before the 5 s refresh.
        httpx.post(f"{served_hub.url}api/v1/publish", json={"channel": "archive", "data": 1})
        page.get_by_label("Data (JSON)").fill('{"nudge": 1}')
        page.get_by_role("button", name="Publish").click()
        archive = page.locator("#channels-table tbody tr", has_text="archive")
        expect(archive.locator("td").nth(1)).to_have_text("0", timeout=2_000)  # subscribers
        expect(archive.locator("td").nth(2)).to_have_text("1")  # events

        # A filter hides what does not match, and shows it again when cleared.
        page.get_by_label("Show type").fill("nothing-like-it")
        expect(item).to_be_hidden()
        page.get_by_label("Show type").fill("")
        expect(item).to_be_visible()

        page.screenshot(path=str(SCREENSHOT), full_page=True)

        served_hub.stop()
        expect(status).to_have_attribute("data-status", "reconnecting", timeout=10_000)
        expect(status).to_contain_text("reconnecting")
        served_hub.start()
        expect(status).to_have_attribute("data-status", "connected", timeout=20_000)

        # Still live after the restart.
        page.get_by_label("Data (JSON)").fill('{"after": "restart"}')
        page.get_by_role("button", name="Publish").click()
        expect(page.locator("#feed li").first).to_contain_text('{"after":"restart"}', timeout=5_000)
    finally:
        page.close()


def test_dashboard_is_readable_on_a_phone(browser: Any, served_hub: ServedHub) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 375, "height": 740})
    try:
        page.goto(served_hub.url)
        expect(page.get_by_role("status").first).to_have_attribute(
            "data-status", "connected", timeout=10_000
        )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways on a phone ({width}px)"
    finally:
        page.close()


def test_refused_subscription_is_reported(browser: Any, served_hub: ServedHub) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        page.goto(served_hub.url)
        expect(page.get_by_role("status").first).to_have_attribute(
            "data-status", "connected", timeout=10_000
        )
        page.get_by_label("Channels to follow (comma-separated)").fill("bad name")
        page.get_by_role("button", name="Follow").click()
        expect(page.locator("#feed-note")).to_contain_text("bad name", timeout=5_000)
    finally:
        page.close()


def test_secured_hub_is_red_without_a_token_and_green_with_one(browser: Any) -> None:
    from playwright.sync_api import expect

    with serving("--api-key", "ops=s3cret-key") as hub:
        page = browser.new_page()
        try:
            page.goto(hub.url)
            status = page.get_by_role("status").first
            expect(status).to_have_attribute("data-status", "failed", timeout=10_000)
            expect(status).to_contain_text("failed: ")
            expect(page.get_by_role("button", name="Reconnect")).to_be_visible()
            expect(page.locator("#connections-note")).to_contain_text("connections: ")
            expect(page.locator("#feed-note")).to_contain_text("token or API key is required")

            page.get_by_label("Token (stored in this browser)").fill("s3cret-key")
            page.get_by_role("button", name="Use token").click()
            expect(status).to_have_attribute("data-status", "connected", timeout=10_000)
            # The refusal from before the token no longer stands in the feed.
            expect(page.locator("#feed-note")).not_to_contain_text("required")
            expect(page.locator("#connections-table")).to_contain_text("apikey:ops", timeout=10_000)
            assert page.evaluate("localStorage.getItem('tidings.token')") == "s3cret-key"

            # A reload keeps the token: connected straight away.
            page.reload()
            expect(status).to_have_attribute("data-status", "connected", timeout=10_000)
        finally:
            page.close()


def test_pages_load_without_the_internet_and_without_console_errors(
    browser: Any, served_hub: ServedHub
) -> None:
    """/docs (Swagger UI) and the dashboard use only what the hub serves: requests to any
    other host are blocked here, and no page logs an error (the favicon included)."""
    from playwright.sync_api import expect

    context = browser.new_context()
    outside: list[str] = []

    def only_the_hub(route: Any) -> None:
        if route.request.url.startswith(served_hub.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_hub)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(served_hub.url + "docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("tidings", timeout=10_000)
        expect(page.locator(".opblock-summary-path").first).to_be_visible()

        page.goto(served_hub.url)
        status = page.get_by_role("status").first
        expect(status).to_have_attribute("data-status", "connected", timeout=10_000)
        favicon = page.request.get(served_hub.url + "favicon.ico")
        assert favicon.status == 200
        assert outside == []
        assert errors == []
    finally:
        context.close()


def test_pending_schedules_are_listed_and_cancelled(browser: Any, served_hub: ServedHub) -> None:
    from playwright.sync_api import expect

    for key in ("expiry:guest", "expiry:lobby"):
        answer = httpx.post(
            f"{served_hub.url}api/v1/publish",
            json={
                "channel": "network:x",
                "type": "network_expiring",
                "data": 1,
                "delay_s": 3600,
                "key": key,
            },
        )
        assert answer.status_code == 202
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(served_hub.url)
        rows = page.locator("#scheduled-table tbody tr")
        expect(rows).to_have_count(2, timeout=10_000)
        expect(rows.first).to_contain_text("network_expiring")
        page.get_by_role("button", name="Cancel expiry:guest").click()
        expect(rows).to_have_count(1, timeout=5_000)
        expect(page.locator("#scheduled-note")).to_contain_text("cancelled expiry:guest")
        listed = httpx.get(f"{served_hub.url}api/v1/scheduled").json()["scheduled"]
        assert [s["key"] for s in listed] == ["expiry:lobby"]
    finally:
        page.close()


SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


def test_publish_form_offers_registered_types_and_shows_field_errors(browser: Any) -> None:
    from playwright.sync_api import expect

    with serving("--schemas", str(SCHEMAS)) as hub:
        page = browser.new_page()
        try:
            page.goto(hub.url)
            options = page.locator("#event-types option")
            expect(options).to_have_count(2, timeout=10_000)
            assert sorted(options.evaluate_all("(all) => all.map((o) => o.value)")) == [
                "job.progress",
                "onu.online",
            ]
            page.get_by_label("Channel", exact=True).first.fill("olt:7")
            page.get_by_label("Type", exact=True).fill("onu.online")
            expect(page.locator("#pub-type-note")).to_contain_text("required: serial, olt, port")
            # The form offers a skeleton of the type's required fields.
            data = page.get_by_label("Data (JSON)")
            expect(data).to_have_value('{"serial":"","olt":"","port":0}')
            data.fill('{"serial": "nope", "port": -1}')
            page.get_by_role("button", name="Publish").click()
            problems = page.locator("#pub-errors li")
            expect(problems).to_have_count(3, timeout=5_000)
            expect(problems.nth(0)).to_contain_text("/olt")
            expect(problems.nth(1)).to_contain_text("/port")
            expect(problems.nth(2)).to_contain_text("/serial")
            expect(page.locator("#pub-result")).to_contain_text("does not match")

            data.fill('{"serial": "ALCL0000BEEF", "olt": "olt-7", "port": 1}')
            page.get_by_role("button", name="Publish").click()
            expect(page.locator("#pub-result")).to_contain_text("published", timeout=5_000)
            expect(problems).to_have_count(0)
        finally:
            page.close()


def test_webhooks_show_their_health_and_recent_deliveries(browser: Any) -> None:
    from playwright.sync_api import expect

    with serving("--webhook-allow-private", "--webhook-retry", "60") as hub:
        # Nothing listens on port 9: every attempt fails, and the endpoint shows it.
        made = httpx.post(f"{hub.url}api/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})
        assert made.status_code == 201
        httpx.post(f"{hub.url}api/v1/publish", json={"channel": "c", "type": "t", "data": 1})
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(hub.url)
            row = page.locator("#webhooks-table tbody tr")
            expect(row).to_have_count(1, timeout=10_000)
            expect(row).to_contain_text("http://127.0.0.1:9/h")
            expect(row.locator("[data-health]")).to_have_attribute(
                "data-health", "failing", timeout=10_000
            )
            page.get_by_role("button", name="Deliveries of http://127.0.0.1:9/h").click()
            delivery = page.locator("#deliveries-table tbody tr")
            expect(delivery).to_have_count(1, timeout=5_000)
            expect(delivery).to_contain_text("pending")
            expect(delivery).to_contain_text("ConnectError")
        finally:
            page.close()
