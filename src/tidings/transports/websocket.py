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
from datetime import UTC, datetime

from starlette.types import Receive, Scope, Send

from tidings.connection import Connection
from tidings.core import protocol
from tidings.core.events import format_timestamp
from tidings.core.session import Frame, State
from tidings.core.wire import WebSocketWire
from tidings.dispatch import dispatch, error_frame
from tidings.errors import ProtocolError, TidingsError
from tidings.hub import Hub
from tidings.transports.common import (
    admit,
    check_origin,
    read_stream_request,
    remote_address,
)

__all__ = ["WebSocketEndpoint"]

log = logging.getLogger("tidings.websocket")


class WebSocketEndpoint:
    """``/ws`` and ``/ws/events``."""

    def __init__(self, hub: Hub) -> None:
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
            request = read_stream_request(scope)
            admission = await admit(hub, scope, request, "websocket")
            connection = hub.open_connection(
                transport="websocket",
                wire=WebSocketWire(),
                identity=admission.identity,
                remote=remote_address(scope),
            )
        except TidingsError as exc:
            await _refuse(send, exc)
            return
        try:
            await send({"type": "websocket.accept"})
            await self._run(connection, admission.channels, request.types, receive, send)
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
        hub = self.hub
        session = connection.session
        connection.session.push_control(
            protocol.encode(
                protocol.connected_message(
                    connection.id, connection.client_id, format_timestamp(datetime.now(UTC))
                )
            )
        )
        interval = hub.settings.ping_interval

        async def send_frames(frames: list[Frame]) -> None:
            for frame in frames:
                if isinstance(frame, bytes):
                    await send({"type": "websocket.send", "bytes": frame})
                else:
                    await send({"type": "websocket.send", "text": frame})

        last_ping = time.monotonic()

        def on_tick() -> None:
            nonlocal last_ping
            now = time.monotonic()
            if now - connection.last_seen > 2 * interval:
                connection.close("stale")
            elif now - last_ping >= interval * 0.9:
                last_ping = now
                session.push_control(
                    protocol.encode(protocol.ping_message(format_timestamp(datetime.now(UTC))))
                )

        ended = await connection.serve(
            send_frames,
            tick=interval,
            on_tick=on_tick,
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
        session = connection.session
        for channel in channels:
            try:
                await hub.subscribe(connection, channel, types=types)
            except TidingsError as exc:
                session.push_control(error_frame(exc))
        limit = hub.settings.max_message_size
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return None
            connection.last_seen = time.monotonic()
            payload: str | bytes | None = message.get("text")
            if payload is None:
                payload = message.get("bytes") or b""
            size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
            if size > limit:
                connection.close("message_too_big")
                return await _park()
            try:
                await dispatch(hub, connection, protocol.parse(payload))
            except ProtocolError as exc:
                session.push_control(error_frame(exc))
            except TidingsError as exc:
                session.push_control(error_frame(exc))
            if session.state is not State.OPEN:
                return await _park()


async def _park() -> None:
    """Stop reading but let the pump deliver the closing frames."""
    await asyncio.Event().wait()


async def _refuse(send: Send, exc: TidingsError) -> None:
    # Accept, say why, then close: browsers cannot read an HTTP status from a refused
    # handshake, but they do see the close code and reason.
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": error_frame(exc)})
    code = protocol.refusal_code(exc.status)
    await send({"type": "websocket.close", "code": int(code), "reason": exc.message[:120]})
