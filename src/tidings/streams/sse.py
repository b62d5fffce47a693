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

from tidings.core import sse
from tidings.core.cursor import decode_cursor
from tidings.core.events import Position
from tidings.core.request import RequestFacts
from tidings.core.routes import StreamRoute
from tidings.core.session import Frame
from tidings.core.wire import sse_wire
from tidings.errors import TidingsError
from tidings.streams.admission import StreamRequest, check_origin, open_stream, read_stream_request
from tidings.streams.outlet import Outlet
from tidings.streams.services import DUE, Streams
from tidings.streams.stream import Stream

__all__ = ["HEADERS", "HEARTBEAT", "SSEStream", "join"]

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]

#: The comment that keeps an idle stream (and the proxies on its way) alive.
HEARTBEAT = sse.comment("ping")


def join(frames: list[Frame]) -> bytes:
    """Frames as one body chunk."""
    first = frames[0]
    if len(frames) == 1 and isinstance(first, bytes):
        return first
    return b"".join(f if isinstance(f, bytes) else f.encode() for f in frames)


class SSEStream(Stream[Outlet]):
    """One event stream: admission, preamble, subscriptions and heartbeats (the writes
    are :class:`~tidings.streams.stream.Stream`'s)."""

    __slots__ = ("heartbeat", "last_write")

    def __init__(self, streams: Streams) -> None:
        super().__init__(streams)
        self.heartbeat = self.node.settings.heartbeat * DUE
        self.last_write = time.monotonic()

    async def open(self, facts: RequestFacts, route: StreamRoute) -> StreamRequest:
        """Admit a request on ``route`` and open its connection; raise
        :class:`TidingsError` if not."""
        request = read_stream_request(facts, route)
        check_origin(self.node, facts)
        wire = sse_wire(plain=request.plain, data_only=request.message == "data")
        self.connection, request = await open_stream(
            self.node, facts, "sse", wire, self.on_ready, request
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
        since: dict[str, str | None] = dict.fromkeys(channels)
        if request.last_event_id is not None:
            since.update(decode_cursor(request.last_event_id, channels))
        try:
            if request.last_event_id is None and request.backfill:
                await self._backfill(since, request.backfill)
            for channel in channels:
                await self.node.subscribe(
                    connection, channel, types=request.types, since=since[channel]
                )
        except TidingsError as exc:
            connection.close("unavailable" if exc.status >= 500 else exc.code)
        finally:
            self._task = None
        connection.session.mark_position()

    async def _backfill(self, since: dict[str, str | None], count: int) -> None:
        # Resume from just before the newest `count` events: the subscription then
        # delivers them, and whatever is published meanwhile, exactly once.
        for channel in since:
            page = await self.node.history(channel, limit=count)
            if page.events:
                first = page.events[0].position
                since[channel] = str(Position(first.epoch, first.offset - 1))

    def sent(self) -> None:
        self.last_write = time.monotonic()

    def tick(self, now: float) -> None:
        connection = self.connection
        if connection is not None and now - self.last_write >= self.heartbeat:
            self.last_write = now
            connection.session.push_control(HEARTBEAT)
