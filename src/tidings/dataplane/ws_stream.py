"""A native WebSocket stream: a hub connection on a :class:`WebSocketProtocol`.

Outgoing frames are written by the :class:`~tidings.dataplane.flush.Flusher`, all that a
session queued in one write; events arrive already framed (one encoding per event for
every subscriber), control messages are framed on the way out. Client messages are
carried out in order by a task that exists only while there are some to carry out, so
an idle connection costs no task. Pings and staleness come from the data plane's clock.
"""

from __future__ import annotations

import asyncio
from collections import deque

from tidings.connection import Connection
from tidings.core import protocol
from tidings.core.websocket import text_frame
from tidings.dataplane.plane import DataPlane
from tidings.dataplane.websocket import WebSocketProtocol
from tidings.transports.websocket import (
    PingClock,
    connected_frame,
    handle_message,
    subscribe_all,
)

__all__ = ["WebSocketStream"]

#: Client messages waiting to be carried out before the socket stops being read.
INBOX_LIMIT = 64


class WebSocketStream:
    """The :class:`~tidings.dataplane.websocket.Handler` of a hub connection."""

    def __init__(self, plane: DataPlane, socket: WebSocketProtocol) -> None:
        self.plane = plane
        self.socket = socket
        self.connection: Connection | None = None
        self.clock: PingClock | None = None
        self._inbox: deque[str | bytes] | None = None
        self._initial: tuple[tuple[str, ...], frozenset[str] | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._reading_paused = False
        self._closing = False

    def on_ready(self) -> None:
        """The session has frames: write them at the end of this loop turn."""
        self.plane.flusher.mark(self)

    def start(
        self, connection: Connection, channels: tuple[str, ...], types: frozenset[str] | None
    ) -> None:
        """Say ``connected`` and follow the channels given in the URL."""
        self.connection = connection
        self.clock = PingClock(connection, self.plane.hub.settings.ping_interval)
        self.plane.add(self)
        connection.session.push_control(connected_frame(connection))
        if channels:
            self._initial = (channels, types)
            self._run()

    # -- writing ----------------------------------------------------------------------

    def flush(self) -> None:
        connection = self.connection
        if connection is None or self._closing:
            return
        session = connection.session
        socket = self.socket
        closing = not session.alive
        if not closing and not socket.writable:
            return  # on_drain flushes
        frames = session.take_frames()
        if frames:
            first = frames[0]
            if len(frames) == 1 and isinstance(first, bytes):
                socket.write(first)
            else:
                socket.write(b"".join(f if isinstance(f, bytes) else text_frame(f) for f in frames))
        if closing:
            self._closing = True
            reason = session.close_reason or "server_shutdown"
            socket.close(int(protocol.close_code_for(reason)), reason)

    def tick(self, now: float) -> None:
        if self.clock is not None and not self._closing:
            self.clock.tick()

    # -- Handler ----------------------------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        if self._stopped or self.connection is None:
            return
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append(data)
        if self._task is None:
            self._run()
        elif len(self._inbox) >= INBOX_LIMIT and not self._reading_paused:
            # A client sending faster than its messages are carried out waits for us.
            transport = self.socket.transport
            if transport is not None:
                self._reading_paused = True
                transport.pause_reading()

    def _run(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._carry_out())

    async def _carry_out(self) -> None:
        connection = self.connection
        assert connection is not None
        hub = self.plane.hub
        try:
            if self._initial is not None:
                channels, types = self._initial
                self._initial = None
                await subscribe_all(hub, connection, channels, types)
            inbox = self._inbox
            while inbox and not self._stopped:
                data = inbox.popleft()
                if self._reading_paused and len(inbox) < INBOX_LIMIT // 2:
                    self._reading_paused = False
                    if self.socket.transport is not None:
                        self.socket.transport.resume_reading()
                if not await handle_message(hub, connection, data):
                    # Closing: stop reading, the flusher sends the closing frames.
                    self._stopped = True
                    inbox.clear()
        finally:
            self._task = None

    def on_drain(self) -> None:
        connection = self.connection
        if connection is not None and len(connection.session.outbox):
            self.on_ready()

    def on_closed(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        self.plane.discard(self)
        if self.connection is not None:
            self.plane.hub.close_connection(self.connection)
