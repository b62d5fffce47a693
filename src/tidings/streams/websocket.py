"""The WebSocket stream (SPEC §5), written once for both paths.

A connection says ``connected``, follows the channels given in the URL, and carries out
client messages in order: by a task that exists only while there are some to carry out,
so an idle connection costs no task. A client that sends faster than its messages are
carried out is not read until it is caught up (at most :data:`INBOX_LIMIT` wait). Pings
go out on the shared clock to a connection that has been quiet; one silent for two ping
intervals is closed as ``stale``. Outgoing frames are handed to the outlet by the flusher.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import UTC, datetime
from typing import Protocol

from tidings.connection import Connection
from tidings.core import protocol
from tidings.core.events import format_timestamp
from tidings.core.request import RequestFacts
from tidings.core.routes import StreamRoute
from tidings.core.session import State
from tidings.core.wire import websocket_wire
from tidings.errors import TidingsError
from tidings.streams.admission import StreamRequest, open_stream, read_stream_request
from tidings.streams.dispatch import dispatch, error_frame
from tidings.streams.outlet import Outlet
from tidings.streams.services import DUE, Streams
from tidings.streams.stream import Stream

__all__ = ["INBOX_LIMIT", "WebSocketOutlet", "WebSocketStream"]

#: Client messages waiting to be carried out before the socket stops being read.
INBOX_LIMIT = 64
#: A client silent for this many ping intervals is gone.
STALE_AFTER = 2


class WebSocketOutlet(Outlet, Protocol):
    """A WebSocket transport's outlet, which can also stop and resume reading."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


class WebSocketStream(Stream[WebSocketOutlet]):
    """One WebSocket connection of the hub; see the module docstring (the writes are
    :class:`~tidings.streams.stream.Stream`'s)."""

    # One per connection: no __dict__, and the inbox only while messages wait.
    __slots__ = (
        "_inbox",
        "_initial",
        "_reading_paused",
        "_stopped",
        "interval",
        "last_ping",
    )

    def __init__(self, streams: Streams) -> None:
        super().__init__(streams)
        self.interval = self.node.settings.ping_interval
        self.last_ping = time.monotonic()
        self._inbox: deque[str | bytes] | None = None
        self._initial: StreamRequest | None = None
        self._stopped = False
        self._reading_paused = False

    async def open(self, facts: RequestFacts, route: StreamRoute, *, framed: bool) -> StreamRequest:
        """Admit a request on ``route`` (its origin already checked) and open its
        connection; raise :class:`TidingsError` if refused. ``framed``: the transport
        writes events as WebSocket frames encoded once (the native front)."""
        request = read_stream_request(facts, route)
        wire = websocket_wire(framed=framed, data_only=request.message == "data")
        self.connection, request = await open_stream(
            self.node, facts, "websocket", wire, self.on_ready, request
        )
        return request

    def start(self, request: StreamRequest, outlet: WebSocketOutlet) -> None:
        """Say ``connected`` and follow the channels given in the URL."""
        connection = self.connection
        assert connection is not None
        self.outlet = outlet
        self.streams.add(self)
        connection.session.push_control(
            protocol.encode(protocol.connected_message(connection.id, connection.client_id, _now()))
        )
        if request.channels:
            self._initial = request
            self._run()

    # -- reading ----------------------------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        """A client message arrived; it is carried out after those before it."""
        if self._stopped or self.connection is None:
            return
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(data)
        if self._task is None:
            self._run()
        elif len(inbox) >= INBOX_LIMIT and not self._reading_paused and self.outlet is not None:
            # A client sending faster than its messages are carried out waits for us.
            self._reading_paused = True
            self.outlet.pause_reading()

    def _run(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._carry_out())

    async def _carry_out(self) -> None:
        connection = self.connection
        assert connection is not None
        try:
            initial, self._initial = self._initial, None
            if initial is not None:
                for channel in initial.channels:
                    try:
                        await self.node.subscribe(connection, channel, types=initial.types)
                    except TidingsError as exc:
                        connection.session.push_control(error_frame(exc))
            inbox = self._inbox
            while inbox and not self._stopped:
                data = inbox.popleft()
                if self._reading_paused and len(inbox) < INBOX_LIMIT // 2:
                    self._reading_paused = False
                    if self.outlet is not None:
                        self.outlet.resume_reading()
                if not await self._handle(connection, data):
                    # Closing: stop reading, the flusher sends the closing frames.
                    self._stopped = True
                    inbox.clear()
        finally:
            self._task = None
            if not self._inbox:
                self._inbox = None  # an idle connection holds no queue

    async def _handle(self, connection: Connection, payload: str | bytes) -> bool:
        """Carry out one client message; False once the connection should stop reading."""
        session = connection.session
        connection.last_seen = time.monotonic()
        size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
        if size > self.node.settings.max_message_size:
            connection.close("message_too_big")
            return False
        try:
            await dispatch(self.node, connection, protocol.parse(payload))
        except TidingsError as exc:
            session.push_control(error_frame(exc))
        return session.state is State.OPEN

    def tick(self, now: float) -> None:
        connection = self.connection
        if connection is None or self._done:
            return
        if now - connection.last_seen > STALE_AFTER * self.interval:
            connection.close("stale")
        elif now - self.last_ping >= self.interval * DUE:
            self.last_ping = now
            connection.session.push_control(protocol.encode(protocol.ping_message(_now())))

    def closed(self) -> None:
        self._stopped = True
        super().closed()
