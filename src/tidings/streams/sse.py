"""The Server-Sent Events stream (SPEC §4), written once for both paths.

Headers and the ``retry:`` frame go out at once; then the stream's subscriptions are made
(recovering from ``Last-Event-ID`` / ``?last_event_id=``), an ``id:``-only frame records
the stream's position, and whatever the session queues is handed to the outlet by the
flusher, all of it per loop turn. A comment line keeps idle streams (and the proxies on
their way) alive. The stream ends when the client goes away or the session is closed
(after its ``disconnect`` frame).
"""

from __future__ import annotations

import asyncio
import time

from tidings.connection import Connection
from tidings.core import sse
from tidings.core.cursor import decode_cursor
from tidings.core.request import RequestFacts
from tidings.core.session import Frame
from tidings.core.wire import SSEWire
from tidings.errors import TidingsError
from tidings.streams.admission import StreamRequest, check_origin, open_stream, read_stream_request
from tidings.streams.outlet import Outlet
from tidings.streams.services import Streams

__all__ = ["HEADERS", "HEARTBEAT", "SSEStream", "join"]

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]

#: The comment that keeps an idle stream (and the proxies on its way) alive.
HEARTBEAT = sse.comment("ping")
#: A heartbeat is due this share of the interval after the last write: the clock ticks
#: a few times per interval, and a tick just short of it must not wait a whole period.
DUE = 0.9


def join(frames: list[Frame]) -> bytes:
    """Frames as one body chunk."""
    first = frames[0]
    if len(frames) == 1 and isinstance(first, bytes):
        return first
    return b"".join(f if isinstance(f, bytes) else f.encode() for f in frames)


class SSEStream:
    """One event stream: admission, preamble, subscriptions, writes and heartbeats."""

    __slots__ = (
        "_ended",
        "_task",
        "connection",
        "heartbeat",
        "last_write",
        "node",
        "outlet",
        "streams",
    )

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.node = streams.node
        self.connection: Connection | None = None
        self.outlet: Outlet | None = None
        self.heartbeat = self.node.settings.heartbeat * DUE
        self.last_write = time.monotonic()
        self._ended = False
        self._task: asyncio.Task[None] | None = None

    async def open(self, facts: RequestFacts) -> StreamRequest:
        """Admit the request and open its connection; raise :class:`TidingsError` if not."""
        request = read_stream_request(facts)
        check_origin(self.node, facts)
        self.connection, request = await open_stream(
            self.node, facts, "sse", SSEWire(plain=request.plain), self.on_ready, request
        )
        return request

    def preamble(self) -> bytes:
        """The first bytes of the body: the ``retry:`` hint (ms) and a comment naming the
        connection. The transport writes them with the response head."""
        assert self.connection is not None
        return sse.frame(retry=self.node.settings.sse_retry) + sse.comment(
            "connected " + self.connection.id
        )

    def start(self, request: StreamRequest, outlet: Outlet) -> None:
        """Follow the stream's channels; what they bring goes to ``outlet`` as it comes."""
        self.outlet = outlet
        self.streams.add(self)
        self._task = asyncio.get_running_loop().create_task(self._subscribe(request))

    async def _subscribe(self, request: StreamRequest) -> None:
        connection = self.connection
        assert connection is not None
        channels = request.channels
        since = (
            decode_cursor(request.last_event_id, channels)
            if request.last_event_id is not None
            else dict.fromkeys(channels)
        )
        try:
            for channel in channels:
                await self.node.subscribe(
                    connection, channel, types=request.types, since=since[channel]
                )
        except TidingsError as exc:
            connection.close("unavailable" if exc.status >= 500 else exc.code)
        finally:
            self._task = None
        connection.session.mark_position()

    # -- writing ----------------------------------------------------------------------

    def on_ready(self) -> None:
        """The session has frames: hand them over at the end of this loop turn."""
        self.streams.flusher.mark(self)

    def flush(self) -> None:
        connection, outlet = self.connection, self.outlet
        if connection is None or outlet is None or self._ended:
            return
        session = connection.session
        closing = not session.alive
        if not closing and not outlet.writable:
            return  # on_drain flushes
        frames = session.take_frames()
        if frames:
            outlet.send(frames)
            self.last_write = time.monotonic()
        if closing:
            self._ended = True
            outlet.finish(0, session.close_reason or "")

    def on_drain(self) -> None:
        """The outlet takes writes again."""
        connection = self.connection
        if connection is not None and len(connection.session.outbox):
            self.on_ready()

    def tick(self, now: float) -> None:
        connection = self.connection
        if connection is not None and now - self.last_write >= self.heartbeat:
            self.last_write = now
            connection.session.push_control(HEARTBEAT)

    def closed(self) -> None:
        """The transport is gone: forget the stream. Idempotent."""
        self._ended = True
        if self._task is not None:
            self._task.cancel()
        self.streams.discard(self)
        if self.connection is not None:
            self.node.close_connection(self.connection)
