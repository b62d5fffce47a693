"""A native SSE stream: the response body written straight onto the transport.

The front protocol has admitted the request and written the response head; from then on
this object is the transport's protocol. The session's frames are written by the
:class:`~tidings.dataplane.flush.Flusher` as one HTTP chunk per flush; a paused transport
(a client that does not read) leaves them in the session's bounded outbox, where the
slow-consumer policy applies. Heartbeats come from the data plane's clock.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tidings.connection import Connection
from tidings.dataplane.plane import DataPlane
from tidings.transports.common import StreamRequest
from tidings.transports.sse import HEARTBEAT, join, subscribe_stream

__all__ = ["SSEStream"]

log = logging.getLogger("tidings.sse")

_LAST_CHUNK = b"0\r\n\r\n"


class SSEStream(asyncio.Protocol):
    """One open event stream; see the module docstring."""

    def __init__(self, plane: DataPlane, transport: asyncio.Transport) -> None:
        self.plane = plane
        self.transport = transport
        self.connection: Connection | None = None
        self.heartbeat = plane.hub.settings.heartbeat * 0.9
        self.last_write = time.monotonic()
        self._paused = False
        self._ended = False
        self._task: asyncio.Task[None] | None = None
        self._abort: asyncio.TimerHandle | None = None

    def on_ready(self) -> None:
        """The session has frames: write them at the end of this loop turn."""
        self.plane.flusher.mark(self)

    def start(self, connection: Connection, request: StreamRequest) -> None:
        """Follow the stream's channels; what they bring is flushed as it comes."""
        self.connection = connection
        self.plane.add(self)
        self._task = asyncio.get_running_loop().create_task(self._subscribe(request))

    async def _subscribe(self, request: StreamRequest) -> None:
        assert self.connection is not None
        try:
            await subscribe_stream(self.plane.hub, self.connection, request)
        finally:
            self._task = None

    def flush(self) -> None:
        connection = self.connection
        if connection is None or self._ended:
            return
        session = connection.session
        closing = not session.alive
        if self._paused and not closing:
            return  # resume_writing flushes
        frames = session.take_frames()
        if frames:
            first = frames[0]
            body = first if len(frames) == 1 and isinstance(first, bytes) else join(frames)
            self.transport.write(b"%x\r\n" % len(body) + body + b"\r\n")
            self.last_write = time.monotonic()
        if closing:
            self._end()

    def _end(self) -> None:
        # The disconnect frame is out: end the body properly, and never wait long on a
        # peer that stopped reading.
        self._ended = True
        self.transport.write(_LAST_CHUNK)
        self.transport.close()
        loop = asyncio.get_running_loop()
        self._abort = loop.call_later(Connection.close_timeout, self.transport.abort)

    def tick(self, now: float) -> None:
        connection = self.connection
        if connection is not None and now - self.last_write >= self.heartbeat:
            self.last_write = now
            connection.session.push_control(HEARTBEAT)

    # -- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        pass  # a stream's request has no body; a client has nothing more to say

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        connection = self.connection
        if connection is not None and len(connection.session.outbox):
            self.on_ready()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()
        self._ended = True
        if self._task is not None:
            self._task.cancel()
        self.plane.discard(self)
        connection = self.connection
        if connection is not None:
            self.plane.hub.close_connection(connection)
