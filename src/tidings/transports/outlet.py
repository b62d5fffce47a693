"""A stream's outlet over an ASGI ``send``, and running a stream until either side ends.

ASGI has no flow-control callbacks: ``send`` is awaited. The outlet owns one sender task
(:meth:`AsgiOutlet.run`) and is ``writable`` only while no send is in flight, so frames
wait in the session's bounded outbox, where the slow-consumer policy applies, exactly as
they do behind a paused transport on the native path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.types import Message, Send

from tidings.connection import Connection
from tidings.core.session import Frame

__all__ = ["AsgiOutlet", "race"]


class AsgiOutlet:
    """An outlet whose frames become ASGI messages; see the module docstring.

    ``encode`` turns frames into messages; ``last`` gives the message that ends the
    stream (the body's end, a WebSocket close) for a close code and reason.
    """

    def __init__(
        self,
        send: Send,
        encode: Callable[[list[Frame]], list[Message]],
        last: Callable[[int, str], Message],
    ) -> None:
        self._send = send
        self._encode = encode
        self._last = last
        self._queue: list[Message] = []
        self._final: Message | None = None
        self._busy = False
        self._wake = asyncio.Event()
        #: Set while the transport's reader may take the next client message.
        self.reading = asyncio.Event()
        self.reading.set()
        self._task: asyncio.Task[Any] | None = None
        self._abort: asyncio.TimerHandle | None = None

    @property
    def writable(self) -> bool:
        return not self._busy and not self._queue

    def send(self, frames: list[Frame]) -> None:
        self._queue.extend(self._encode(frames))
        self._wake.set()

    def finish(self, code: int, reason: str) -> None:
        self._final = self._last(code, reason)
        self._wake.set()
        task = self._task
        if task is not None and self._abort is None:
            # A peer that stopped reading leaves send() waiting forever: cut it off.
            loop = task.get_loop()
            self._abort = loop.call_later(Connection.close_timeout, task.cancel)

    def pause_reading(self) -> None:
        self.reading.clear()

    def resume_reading(self) -> None:
        self.reading.set()

    async def run(self, on_drain: Callable[[], None]) -> None:
        """Send what is handed over until the stream is finished."""
        self._task = asyncio.current_task()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    batch, self._queue = self._queue, []
                    self._busy = True
                    for message in batch:
                        await self._send(message)
                    self._busy = False
                    on_drain()
                if self._final is not None:
                    await self._send(self._final)
                    return
        finally:
            if self._abort is not None:
                self._abort.cancel()


async def race(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutines`` until the first ends; cancel and await the others."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
