"""Stopping background tasks so that they really stop.

On Python 3.11 a cancellation can be lost. ``asyncio.wait_for``, which redis-py uses to
bound every socket write when a ``socket_timeout`` is set, returns the write's result
instead of raising when the write completes in the same turn as the cancellation arrives
(CPython gh-86296, fixed in 3.12 where ``wait_for`` is built on ``asyncio.timeout``). A
loop that goes on after that holds its ``stop()`` for ever, and with it ``tidings serve``
on SIGTERM. :func:`cancel_and_wait` cancels again until the task has ended: the next
cancellation lands where the loop waits, and that one is not lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["cancel_and_wait"]

log = logging.getLogger("tidings.tasks")

#: Seconds between cancellations of a task that has not ended yet.
RECANCEL = 0.1


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (``None`` is skipped) and return once each has ended.

    An exception a task ended with is logged, not raised: stopping goes on with the rest.
    """
    given = [task for task in tasks if task is not None]
    pending = {task for task in given if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL)
    for task in given:
        if not task.cancelled() and task.exception() is not None:
            log.warning("a background task ended with an error", exc_info=task.exception())
