"""The WebSocket endpoint (SPEC §5) as a raw ASGI app.

Two tasks per connection: the connection's pump writes what the session queues; the
reader here takes client messages, enforces the size bound, and hands each parsed
message to :func:`tidings.dispatch.dispatch`. Pings go out on the pump's idle tick; a
client silent for two ping intervals is closed as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from starlette.types import Receive, Scope, Send

from tidings.connection import Connection
from tidings.core import protocol
from tidings.core.events import format_timestamp
from tidings.core.session import Frame, State, Wire
from tidings.core.wire import WebSocketWire
from tidings.dispatch import dispatch, error_frame
from tidings.errors import TidingsError
from tidings.node import Node
from tidings.transports.common import (
    StreamRequest,
    admit,
    check_origin,
    read_stream_request,
    remote_address,
)

__all__ = [
    "PingClock",
    "WebSocketEndpoint",
    "connected_frame",
    "handle_message",
    "open_websocket",
    "refusal",
    "subscribe_all",
]

log = logging.getLogger("tidings.websocket")


class WebSocketEndpoint:
    """``/ws`` and ``/ws/events``."""

    def __init__(self, hub: Node) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            check_origin(hub, scope)
        except TidingsError:
            # Refused before the handshake: the browser sees HTTP 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            connection, request = await open_websocket(hub, scope, WebSocketWire())
        except TidingsError as exc:
            await _refuse(send, exc)
            return
        try:
            await send({"type": "websocket.accept"})
            await self._run(connection, request.channels, request.types, receive, send)
        finally:
            hub.close_connection(connection)

    async def _run(
        self,
        connection: Connection,
        channels: tuple[str, ...],
        types: frozenset[str] | None,
        receive: Receive,
        send: Send,
    ) -> None:
        session = connection.session
        session.push_control(connected_frame(connection))

        async def send_frames(frames: list[Frame]) -> None:
            for frame in frames:
                if isinstance(frame, bytes):
                    await send({"type": "websocket.send", "bytes": frame})
                else:
                    await send({"type": "websocket.send", "text": frame})

        clock = PingClock(connection, self.hub.settings.ping_interval)
        ended = await connection.serve(
            send_frames,
            tick=clock.interval,
            on_tick=clock.tick,
            until=self._read(connection, channels, types, receive),
        )
        if ended and session.close_reason is not None:
            code = protocol.close_code_for(session.close_reason)
            # A peer that stopped reading leaves the transport paused, and send() would
            # wait for it forever: bound the close, the server closes the socket anyway.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(connection.close_timeout):
                    await send(
                        {
                            "type": "websocket.close",
                            "code": int(code),
                            "reason": session.close_reason,
                        }
                    )

    async def _read(
        self,
        connection: Connection,
        channels: tuple[str, ...],
        types: frozenset[str] | None,
        receive: Receive,
    ) -> None:
        hub = self.hub
        await subscribe_all(hub, connection, channels, types)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return None
            payload: str | bytes | None = message.get("text")
            if payload is None:
                payload = message.get("bytes") or b""
            if not await handle_message(hub, connection, payload):
                return await _park()


def connected_frame(connection: Connection) -> str:
    """The ``connected`` message every WebSocket connection starts with."""
    return protocol.encode(
        protocol.connected_message(
            connection.id, connection.client_id, format_timestamp(datetime.now(UTC))
        )
    )


async def subscribe_all(
    hub: Node, connection: Connection, channels: tuple[str, ...], types: frozenset[str] | None
) -> None:
    """Subscribe to the channels given in the URL; a refusal is an ``error`` message."""
    for channel in channels:
        try:
            await hub.subscribe(connection, channel, types=types)
        except TidingsError as exc:
            connection.session.push_control(error_frame(exc))


async def handle_message(hub: Node, connection: Connection, payload: str | bytes) -> bool:
    """Carry out one client message; False once the connection should stop reading."""
    session = connection.session
    connection.last_seen = time.monotonic()
    size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
    if size > hub.settings.max_message_size:
        connection.close("message_too_big")
        return False
    try:
        await dispatch(hub, connection, protocol.parse(payload))
    except TidingsError as exc:
        session.push_control(error_frame(exc))
    return session.state is State.OPEN


class PingClock:
    """Pings a connection that has been quiet, and closes one silent for two intervals."""

    __slots__ = ("connection", "interval", "last_ping")

    def __init__(self, connection: Connection, interval: float) -> None:
        self.connection = connection
        self.interval = interval
        self.last_ping = time.monotonic()

    def tick(self) -> None:
        connection = self.connection
        now = time.monotonic()
        if now - connection.last_seen > 2 * self.interval:
            connection.close("stale")
        elif now - self.last_ping >= self.interval * 0.9:
            self.last_ping = now
            connection.session.push_control(
                protocol.encode(protocol.ping_message(format_timestamp(datetime.now(UTC))))
            )


async def _park() -> None:
    """Stop reading but let the pump deliver the closing frames."""
    await asyncio.Event().wait()


async def open_websocket(
    hub: Node, scope: Scope, wire: Wire, on_ready: Callable[[], None] | None = None
) -> tuple[Connection, StreamRequest]:
    """Admit a WebSocket request (its origin already checked) and open its connection;
    raise :class:`TidingsError` if refused. The request's channels are the admitted ones.

    Shared by this endpoint and the native data plane of ``tidings serve``.
    """
    request = read_stream_request(scope)
    admission = await admit(hub, scope, request, "websocket")
    connection = hub.open_connection(
        transport="websocket",
        wire=wire,
        identity=admission.identity,
        remote=remote_address(scope),
        on_ready=on_ready,
    )
    return connection, replace(request, channels=admission.channels)


def refusal(exc: TidingsError) -> tuple[str, int, str]:
    """How a refused WebSocket is told why: the ``error`` message, close code and reason.

    It is accepted first, then closed: browsers cannot read an HTTP status from a refused
    handshake, but they do see the close code and reason.
    """
    return error_frame(exc), int(protocol.refusal_code(exc.status)), exc.message[:120]


async def _refuse(send: Send, exc: TidingsError) -> None:
    text, code, reason = refusal(exc)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": text})
    await send({"type": "websocket.close", "code": code, "reason": reason})
