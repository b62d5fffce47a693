"""Acceptance scenario 5 (SPEC §11) in a real Chromium: the check-in page of
``examples/checkin_groups``, started with the command in its README, follows its group
with 2-second tokens from a token function. While the app's token endpoint is
unreachable, the token expires and the hub closes the stream (``token_expired``); the
page reconnects with a fresh token once it can, and shows every numbered event
published before, during and after the outage exactly once, in order."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import free_port
from tests.examples_support import run_example

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_example(tmp_path: Path, token_ttl: int) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CHECKIN_DB": str(tmp_path / "school.db"),
        "CHECKIN_PORT": str(port),
        "CHECKIN_TOKEN_TTL": str(token_ttl),
        "TIDINGS_JWT_LEEWAY": "0",  # closed at exp itself: keeps the test short
    }
    base = f"http://127.0.0.1:{port}"
    with run_example(
        [sys.executable, "examples/checkin_groups/app.py"],
        tmp_path / "server.log",
        env=env,
        ready=lambda: httpx.get(base + "/", timeout=1).status_code == 200,
        check_exit=False,
    ):
        yield base


class Publisher(threading.Thread):
    """Starts numbered activities in group 1 (and, between them, in group 2, which the
    page must never show) every 100 ms until stopped."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.published: list[str] = []
        self.progress = threading.Condition()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=5) as http:
                n = 0
                while not self.stopping.is_set():
                    n += 1
                    for group, name in ((1, f"round {n}"), (2, f"other {n}")):
                        answer = http.post(f"/api/groups/{group}/activities", json={"name": name})
                        answer.raise_for_status()
                    with self.progress:
                        self.published.append(f"round {n}")
                        self.progress.notify_all()
                    self.stopping.wait(0.1)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for(self, count: int, timeout: float = 5) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.published) >= count, timeout)


def test_page_resumes_without_loss_after_its_token_expired(browser: Any, tmp_path: Path) -> None:
    with running_example(tmp_path, token_ttl=2) as base:
        page = browser.new_page()
        outage = threading.Event()

        def token_endpoint(route: Any) -> None:
            if outage.is_set():
                route.abort("connectionrefused")
            else:
                route.continue_()

        page.route("**/api/token?*", token_endpoint)
        publisher = Publisher(base)
        try:
            page.goto(base + "/?supervisor=ann")
            page.wait_for_function(
                "window.statuses?.some((s) => s.status === 'connected')", timeout=10_000
            )
            assert page.text_content("#groups") == "1"
            publisher.start()
            # The app becomes unreachable for tokens: the page's renewal before exp fails,
            # and the hub closes the stream when the token expires.
            outage.set()
            page.wait_for_function(
                "window.statuses.some((s) => s.reason === 'token_expired')", timeout=10_000
            )
            closed = page.evaluate("window.seen.length")
            # Events keep coming while the page cannot reconnect (no token to be had).
            with publisher.progress:
                at_close = len(publisher.published)
            publisher.wait_for(at_close + 5)
            assert page.evaluate("window.seen.length") == closed
            outage.clear()
            page.wait_for_function(
                "window.statuses.filter((s) => s.status === 'connected').length >= 2",
                timeout=10_000,
            )
            with publisher.progress:
                at_reconnect = len(publisher.published)
            publisher.wait_for(at_reconnect + 3)
            publisher.stopping.set()
            publisher.join(10)
            assert publisher.error is None, publisher.error
            expected = publisher.published
            page.wait_for_function(f"window.seen.length >= {len(expected)}", timeout=5_000)
            shown = page.evaluate("window.seen.map((e) => e.data.activity)")
            assert shown == expected  # no gap, no duplicate, nothing of group 2
            assert len(expected) > at_close + 5 > closed
            statuses = page.evaluate("window.statuses.map((s) => [s.status, s.reason ?? null])")
            assert ["reconnecting", "token_expired"] in statuses, statuses
        finally:
            publisher.stopping.set()
            page.close()
