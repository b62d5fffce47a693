"""What every stream core shares: its connection, its outlet, and the one write discipline.

A session calls :meth:`Stream.on_ready` when it has frames; the stream marks itself in the
hub's flusher, and at the end of the loop turn :meth:`Stream.flush` hands everything
queued to the outlet at once, if the outlet is writable; otherwise the frames wait in
the session's bounded outbox and the outlet's drain brings the stream back. Once the
session is closed, what is left goes out and the outlet finishes the stream with the
close code and reason of the session's close reason.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from tidings.connection import Connection
from tidings.core import protocol
from tidings.streams.outlet import Outlet
from tidings.streams.services import Streams

__all__ = ["Stream"]

O = TypeVar("O", bound=Outlet)  # noqa: E741 - the outlet's type


class Stream(Generic[O]):
    """The part of a stream core that is the same for SSE and WebSocket."""

    __slots__ = ("_done", "_task", "connection", "node", "outlet", "streams")

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.node = streams.node
        self.connection: Connection | None = None
        self.outlet: O | None = None
        #: The outlet was finished (or the transport is gone): nothing more is written.
        self._done = False
        self._task: asyncio.Task[None] | None = None

    def on_ready(self) -> None:
        """The session has frames: hand them over at the end of this loop turn."""
        self.streams.flusher.mark(self)

    def flush(self) -> None:
        connection, outlet = self.connection, self.outlet
        if connection is None or outlet is None or self._done:
            return
        session = connection.session
        closing = not session.alive
        if not closing and not outlet.writable:
            return  # on_drain flushes
        frames = session.take_frames()
        if frames:
            outlet.send(frames)
            self.sent()
        if closing:
            self._done = True
            reason = session.close_reason or "server_shutdown"
            outlet.finish(int(protocol.close_code_for(reason)), reason)

    def sent(self) -> None:
        """Frames went out (the SSE stream times its heartbeats from here)."""

    def on_drain(self) -> None:
        """The outlet takes writes again."""
        connection = self.connection
        if connection is not None and len(connection.session.outbox):
            self.on_ready()

    def tick(self, now: float) -> None:
        """Upkeep on the hub's clock (heartbeats, pings); each stream says which."""

    def closed(self) -> None:
        """The transport is gone: forget the stream. Idempotent."""
        self._done = True
        if self._task is not None:
            self._task.cancel()
        self.streams.discard(self)
        if self.connection is not None:
            self.node.close_connection(self.connection)
