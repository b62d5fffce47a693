"""Coroutines run one at a time, in the order they were handed over.

Control messages arrive as plain calls; what they start may await (a subscribe reads
the store). :class:`Serial` keeps their effects in arrival order, so "subscribe, then
unsubscribe" never ends subscribed, without holding up the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

from tidings.tasks import cancel_and_wait

__all__ = ["Serial"]

log = logging.getLogger("tidings.serial")


class Serial:
    """A queue of coroutines with one task draining it while it is not empty."""

    def __init__(self) -> None:
        self._queue: deque[Coroutine[Any, Any, None]] = deque()
        self._task: asyncio.Task[None] | None = None

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after everything handed over before it. Needs a running loop."""
        self._queue.append(work)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                work = self._queue.popleft()
                try:
                    await work
                except Exception:
                    log.exception("queued work failed")
        finally:
            self._task = None

    async def aclose(self) -> None:
        """Drop what has not started and cancel what has."""
        while self._queue:
            self._queue.popleft().close()
        task = self._task
        await cancel_and_wait(task)
