"""Writing what sessions queued: once per turn of the event loop, one write per connection.

A session calls its ``on_ready`` when its outbox stops being empty. Streams, on both
paths, answer by marking themselves here; at the end of the current turn of the loop
every marked stream hands everything its session queued meanwhile to its outlet at once
(one ``transport.write`` natively; one ``send`` per message through ASGI). So one event
to many connections costs one write each, a burst of events to one connection costs one
write in all, and nothing needs a task per connection to decide when to write.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["Flushable", "Flusher"]


class Flushable(Protocol):
    def flush(self) -> None:
        """Write what the session queued (or as much as flow control allows)."""


class Flusher:
    """The set of streams with something to write, flushed at the end of the loop turn."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self, stream: Flushable) -> None:
        """``stream`` has frames to write; it is flushed once, soon."""
        self._dirty.append(stream)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.run)

    def run(self) -> None:
        """Flush every marked stream now."""
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for stream in dirty:
            stream.flush()
