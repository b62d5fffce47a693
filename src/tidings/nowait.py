"""Fire-and-forget publishing from sync code and other threads (``hub.publish_nowait``).

Calls append to a bounded, lock-protected queue and wake one task on the hub's loop, which
publishes the items in call order. Nothing here ever raises into the caller: an item that
cannot be queued or published is logged and counted. What must never happen: an item
published twice, or two items of one thread published out of call order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from tidings.errors import TidingsError
from tidings.tasks import cancel_and_wait

__all__ = ["NowaitQueue"]

log = logging.getLogger("tidings.hub")

T = TypeVar("T")


class NowaitQueue(Generic[T]):
    """A bounded queue drained, in order, by ``publish`` on the loop given to :meth:`start`.

    ``on_failure`` is called (from any thread) once per item dropped or failed.
    """

    def __init__(
        self,
        publish: Callable[[T], Awaitable[object]],
        *,
        on_failure: Callable[[], None],
        limit: int = 10_000,
    ) -> None:
        self._publish = publish
        self._on_failure = on_failure
        self.limit = limit
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin draining on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = asyncio.create_task(self._drain(), name="tidings-nowait")

    def put(self, item: T) -> None:
        """Queue ``item``; safe from any thread. Never raises."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            self.failed("publish_nowait before the hub started; event dropped")
            return
        with self._lock:
            full = len(self._items) >= self.limit
            if not full:
                self._items.append(item)
        if full:
            self.failed("publish_nowait backlog is full; event dropped")
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the hub's loop is closed: a thread outlived the app
            with self._lock, contextlib.suppress(ValueError):
                self._items.remove(item)
            self.failed("publish_nowait after the hub's event loop closed; event dropped")

    def failed(self, message: str) -> None:
        self._on_failure()
        log.warning(message)

    async def flush(self, *, grace: float) -> None:
        """Wait, at most ``grace`` s, until everything queued is published."""
        wake, idle = self._wake, self._idle
        if wake is None or idle is None or self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._items or not idle.is_set():
                    idle.clear()
                    wake.set()
                    await idle.wait()

    async def stop(self) -> None:
        """Stop draining; what is still queued is dropped, logged and counted."""
        task, self._task = self._task, None
        self._loop = self._wake = self._idle = None
        await cancel_and_wait(task)
        with self._lock:
            unpublished = len(self._items)
            self._items.clear()
        if unpublished:
            self.failed(f"hub stopped; {unpublished} publish_nowait event(s) dropped")

    async def _drain(self) -> None:
        wake, idle = self._wake, self._idle
        assert wake is not None and idle is not None
        while True:
            idle.set()
            await wake.wait()
            idle.clear()
            wake.clear()
            while True:
                with self._lock:
                    if not self._items:
                        break
                    item = self._items.popleft()
                try:
                    await self._publish(item)
                except Exception as exc:
                    self._on_failure()
                    log.warning(
                        "publish_nowait failed: %s",
                        exc if isinstance(exc, TidingsError) else type(exc).__name__,
                        extra={"channel": getattr(item, "channel", None)},
                    )
