"""Acceptance scenario 3 (SPEC §11) in a real Chromium: the ISP platform's React console
(``examples/isp_platform``) drives a job to paused, resumed and cancelled with its
buttons — commands over the page's WebSocket — and two tenants' pages, open side by
side, never see each other's events.

The app runs as ``python -m examples.isp_platform.app`` (its README's command) on a free
port; its page loads React from ``clients/js/node_modules`` (``npm ci`` in clients/js).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import REQUIRED, free_port
from tests.examples_support import run_example

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
REACT = ROOT / "clients" / "js" / "node_modules" / "react" / "umd"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example app, as its README runs it, with jobs slow enough to click."""
    if not REACT.is_dir():
        message = "React is not installed: run `npm ci` in clients/js"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "ISP_PORT": str(port),
        "ISP_JOB_TICK": "0.1",
        "ISP_JOB_STEPS": "300",  # 30 s: the test pauses, resumes and cancels well before
    }
    url = f"http://127.0.0.1:{port}/"
    with run_example(
        [sys.executable, "-m", "examples.isp_platform.app"],
        tmp_path_factory.mktemp("isp") / "server.log",
        env=env,
        ready=lambda: httpx.get(f"{url}realtime/health", timeout=1).status_code == 200,
        check_exit=False,
    ):
        yield url


def open_console(browser: Any, url: str, user: str, errors: list[str]) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context()  # own cookies: one operator per context
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{user}: {error}"))
    # Commands go over the page's WebSocket, never the HTTP fallback.
    page.on(
        "request",
        lambda request: (
            "/api/v1/commands" in request.url and errors.append(f"{user}: HTTP {request.url}")
        ),
    )
    page.goto(f"{url}?user={user}")
    expect(page.locator("#status")).to_have_text("connected", timeout=10_000)
    return page


def percent(row: Any) -> float:
    return float(row.locator(".percent").inner_text().strip().rstrip("%"))


def test_job_paused_resumed_cancelled_from_the_page_and_tenants_kept_apart(
    browser: Any, platform: str
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    acme = open_console(browser, platform, "ana", errors)
    globex = open_console(browser, platform, "gus", errors)
    try:
        # Each operator starts a job; each page shows only its own.
        acme.get_by_role("button", name="Start job").click()
        job = acme.locator("li.job")
        expect(job).to_have_count(1)
        expect(job).to_have_attribute("data-state", "running")
        acme_job = job.get_attribute("data-job")
        globex.get_by_role("button", name="Start job").click()
        expect(globex.locator("li.job")).to_have_count(1)
        globex_job = globex.locator("li.job").get_attribute("data-job")
        assert acme_job and globex_job and acme_job != globex_job

        # Progress arrives, then Pause stops it.
        expect(job.locator(".percent")).not_to_have_text(" 0% ")
        job.get_by_role("button", name="Pause").click()
        expect(job).to_have_attribute("data-state", "paused")
        expect(acme.locator("#log li[data-type='job.paused']")).to_have_count(1)
        paused_at = percent(job)
        progress_events = acme.locator("#log li[data-type='job.progress']").count()
        # While paused: the other tenant's job keeps making progress (so time passes),
        # and this one makes none.
        globex_progress = globex.locator("#log li[data-type='job.progress']")
        expect(globex_progress).not_to_have_count(globex_progress.count())
        expect(globex_progress).not_to_have_count(globex_progress.count())
        assert percent(job) == paused_at
        assert acme.locator("#log li[data-type='job.progress']").count() == progress_events
        expect(job.get_by_role("button", name="Pause")).to_be_disabled()

        # Resume: progress again, beyond where it stopped.
        job.get_by_role("button", name="Resume").click()
        expect(job).to_have_attribute("data-state", "running")
        expect(acme.locator("#log li[data-type='job.progress']")).not_to_have_count(progress_events)
        assert percent(job) > paused_at

        # Cancel: the state is final, the buttons are off.
        job.get_by_role("button", name="Cancel").click()
        expect(job).to_have_attribute("data-state", "cancelled")
        expect(job.get_by_role("button", name="Resume")).to_be_disabled()
        expect(job.get_by_role("button", name="Cancel")).to_be_disabled()
        assert acme.locator("#problem").count() == 0

        # An alert on each side; each page gets its own, and only its own.
        acme.get_by_role("button", name="Raise alert").click()
        expect(acme.locator("#log li[data-type='alert.raised']")).to_have_count(1)
        globex.get_by_role("button", name="Raise alert").click()
        expect(globex.locator("#log li[data-type='alert.raised']")).to_have_count(1)

        # The job's whole story, in order, on acme's page.
        types = acme.locator("#log li").evaluate_all("els => els.map(e => e.dataset.type)")
        story = [t for t in types if t not in ("job.progress", "alert.raised")]
        assert story == ["job.started", "job.paused", "job.resumed", "job.cancelled"]
        # Each page saw its own tenant's channels only, and nothing of the other's job.
        for page, own, other_job in ((acme, "acme", globex_job), (globex, "globex", acme_job)):
            log = page.locator("#log li")
            channels = set(log.evaluate_all("els => els.map(e => e.dataset.channel)"))
            assert channels == {f"tenant:{own}/jobs", f"tenant:{own}/alerts"}
            assert not any(f'"{other_job}"' in text for text in log.all_inner_texts())
            expect(page.locator("li.job")).to_have_count(1)
        assert errors == []
    finally:
        for page in (acme, globex):
            page.context.close()
