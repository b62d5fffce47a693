"""Firing scheduled events: each once, on time, by whichever node gets to it first.

Every node runs one :class:`ScheduleRunner`. It claims the due entries of the shared
:class:`~tidings.backends.base.Schedules` (a lease: no other node gets them meanwhile),
publishes each with its version as the idempotency key, then marks it done. A node that
dies between claim and done loses nothing: the lease runs out, another node claims the
entry, and the store drops the second copy if the first was in fact stored. So each
schedule becomes exactly one event, even across a crash.

The runner sleeps until the earliest due time it knows (at most ``poll`` seconds, so
entries another node scheduled, or left behind, are seen), and is woken at once by a
schedule made on this node that is due sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from tidings.backends.base import Schedules
from tidings.core.scheduled import Scheduled
from tidings.errors import TidingsError
from tidings.tasks import cancel_and_wait

__all__ = ["ScheduleRunner"]

log = logging.getLogger("tidings.scheduling")

Fire = Callable[[Scheduled], Awaitable[None]]


class ScheduleRunner:
    """Claims and fires due entries of ``schedules``; see the module docstring."""

    def __init__(
        self,
        schedules: Schedules,
        fire: Fire,
        *,
        lease: float = 10.0,
        poll: float = 1.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.schedules = schedules
        self.fire = fire
        self.lease = lease
        self.poll = poll
        self.batch = batch
        self.clock = clock
        #: Seconds each recent event fired after its due time (for metrics and benches).
        self.lateness: deque[float] = deque(maxlen=10_000)
        self.fired = 0
        self._wake = asyncio.Event()
        self._next = float("inf")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def scheduled(self, at: float) -> None:
        """An entry due at ``at`` was scheduled here: wake up sooner if it needs it."""
        if at < self._next:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self._fire_due()
                if claimed == self.batch:
                    continue  # more may be due right now
                upcoming = await self.schedules.next_due()
            except Exception as exc:
                log.warning("scheduled events cannot be read: %s", type(exc).__name__)
                upcoming = None
            now = self.clock()
            wait = self.poll if upcoming is None else min(self.poll, max(0.0, upcoming - now))
            self._next = now + wait
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _fire_due(self) -> int:
        now = self.clock()
        due = await self.schedules.claim(now, lease=self.lease, limit=self.batch)
        for entry in due:
            try:
                await self.fire(entry)
            except TidingsError as exc:
                if exc.status >= 500:
                    # The broker or store is down: the lease runs out, it is tried again.
                    log.warning("scheduled event %r not published yet: %s", entry.key, exc.code)
                    continue
                # It was valid when scheduled; the rules changed since (a smaller limit).
                log.error("scheduled event %r dropped: %s", entry.key, exc.message)
            else:
                self.lateness.append(self.clock() - entry.at)
                self.fired += 1
            await self.schedules.done(entry)
        return len(due)
