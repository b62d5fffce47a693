"""The Server-Sent Events endpoint (SPEC §4) as a raw ASGI app.

Headers and the ``retry:`` frame go out at once; then the stream's subscriptions are
made (recovering from ``Last-Event-ID`` / ``?last_event_id=``), an ``id:``-only frame
records the stream's position, and the connection's pump writes whatever its session
queues, batched into one body chunk per wake-up. A comment line keeps idle streams
alive. The stream ends when the client goes away or the session is closed (after its
``disconnect`` frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from starlette.types import Message, Receive, Scope, Send

from tidings.api.errors import send_error
from tidings.connection import Connection
from tidings.core import sse
from tidings.core.cursor import decode_cursor
from tidings.core.session import Frame
from tidings.core.wire import SSEWire
from tidings.errors import BadRequest, TidingsError
from tidings.node import Node
from tidings.transports.common import (
    StreamRequest,
    admit,
    check_origin,
    read_stream_request,
    remote_address,
)

__all__ = [
    "HEADERS",
    "HEARTBEAT",
    "SSEEndpoint",
    "join",
    "open_stream",
    "preamble",
    "subscribe_stream",
]

log = logging.getLogger("tidings.sse")

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]

#: The comment that keeps an idle stream (and the proxies on its way) alive.
HEARTBEAT = sse.comment("ping")


class SSEEndpoint:
    """``GET /api/v1/events`` and ``GET /api/v1/channels/{channel}/events/stream``."""

    def __init__(self, hub: Node) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        try:
            connection, request = await open_stream(hub, scope)
        except TidingsError as exc:
            await send_error(send, exc)
            return
        try:
            await self._stream(connection, request, receive, send)
        finally:
            hub.close_connection(connection)

    async def _stream(
        self,
        connection: Connection,
        request: StreamRequest,
        receive: Receive,
        send: Send,
    ) -> None:
        hub = self.hub
        settings = hub.settings
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send(
            {
                "type": "http.response.body",
                "body": preamble(connection, hub.settings.sse_retry),
                "more_body": True,
            }
        )
        await subscribe_stream(hub, connection, request)
        session = connection.session
        last_write = time.monotonic()

        async def send_frames(frames: list[Frame]) -> None:
            nonlocal last_write
            await send({"type": "http.response.body", "body": join(frames), "more_body": True})
            last_write = time.monotonic()

        def on_tick() -> None:
            if time.monotonic() - last_write >= settings.heartbeat * 0.9:
                session.push_control(HEARTBEAT)

        ended = await connection.serve(
            send_frames,
            tick=settings.heartbeat,
            on_tick=on_tick,
            until=_wait_for_disconnect(receive),
        )
        if ended:
            # The session ended (its disconnect frame is out): end the response cleanly,
            # but never wait on a peer that stopped reading.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(connection.close_timeout):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def open_stream(
    hub: Node, scope: Scope, on_ready: Callable[[], None] | None = None
) -> tuple[Connection, StreamRequest]:
    """Admit an SSE request and open its connection; raise :class:`TidingsError` if refused.

    Shared by this endpoint and the native data plane of ``tidings serve`` (which passes
    ``on_ready``, see :meth:`Node.open_connection`).
    """
    request = read_stream_request(scope)
    check_origin(hub, scope)
    admission = await admit(hub, scope, request, "sse")
    if not admission.channels:
        raise BadRequest("give at least one ?channel=", code="missing_channel")
    connection = hub.open_connection(
        transport="sse",
        wire=SSEWire(plain=request.plain),
        identity=admission.identity,
        remote=remote_address(scope),
        on_ready=on_ready,
    )
    connection.session.declared_width = len(admission.channels)
    return connection, replace(request, channels=admission.channels)


def preamble(connection: Connection, retry: int) -> bytes:
    """The first bytes of a stream: the ``retry:`` hint (ms) and a comment naming the
    connection."""
    return sse.frame(retry=retry) + sse.comment("connected " + connection.id)


async def subscribe_stream(hub: Node, connection: Connection, request: StreamRequest) -> None:
    """Subscribe a stream to its channels, recovering from ``Last-Event-ID``, then queue
    the ``id:``-only frame that records its position."""
    channels = request.channels
    since = (
        decode_cursor(request.last_event_id, channels)
        if request.last_event_id is not None
        else dict.fromkeys(channels)
    )
    try:
        for channel in channels:
            await hub.subscribe(connection, channel, types=request.types, since=since[channel])
    except TidingsError as exc:
        connection.close("unavailable" if exc.status >= 500 else exc.code)
    connection.session.mark_position()


def join(frames: list[Frame]) -> bytes:
    """Frames as one body chunk."""
    return b"".join(f if isinstance(f, bytes) else f.encode() for f in frames)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
