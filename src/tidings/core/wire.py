"""The two wire formats a :class:`~tidings.core.session.Session` renders frames in."""

from __future__ import annotations

import orjson

from tidings.core import protocol, sse
from tidings.core.events import EncodedEvent, Position
from tidings.core.session import Session

__all__ = [
    "FramedDataWebSocketWire",
    "FramedWebSocketWire",
    "SSEDataWire",
    "SSEWire",
    "WebSocketDataWire",
    "WebSocketWire",
    "sse_wire",
    "websocket_wire",
]


class SSEWire:
    """SPEC §4 frames. Each event's ``id:`` is the stream's resume cursor."""

    def __init__(self, *, plain: bool = False) -> None:
        self.plain = plain

    def event(self, encoded: EncodedEvent, session: Session) -> bytes:
        # The cursor of a one-channel stream is the event's id: the frame is the same for
        # every such stream, encoded once.
        if session.width == 1:
            return encoded.sse_frame(plain=self.plain)
        return b"id: " + session.cursor().encode() + b"\n" + encoded.sse_body(plain=self.plain)

    def subscribed(
        self, channel: str, recovered: bool, position: Position, rid: str | int | None
    ) -> None:
        return None

    def unsubscribed(self, channel: str, rid: str | int | None) -> None:
        return None

    def reset(self, channel: str, reason: str, position: Position) -> bytes:
        data = orjson.dumps({"channel": channel, "reason": reason, "position": str(position)})
        return sse.frame(event="reset", data=data.decode())

    def disconnect(self, reason: str) -> bytes:
        message = protocol.disconnect_message(reason)
        del message["type"]
        return sse.frame(event="disconnect", data=orjson.dumps(message).decode())

    def position(self, session: Session) -> bytes | None:
        # Sets the client's Last-Event-ID, so a stream that has not received anything yet
        # still resumes exactly. It carries data because clients that dispatch only frames
        # with data (Node's `eventsource`) apply the id only then; being a named event,
        # browsers' `onmessage` does not see it.
        if not session.subscriptions:
            return None
        cursor = session.cursor()
        return sse.frame(
            event="position", id=cursor, data=orjson.dumps({"cursor": cursor}).decode()
        )


class SSEDataWire(SSEWire):
    """:class:`SSEWire` of a ``message="data"`` route: each frame's ``data:`` is the
    event's data, its ``event:`` the event's type, its ``id:`` the cursor."""

    def event(self, encoded: EncodedEvent, session: Session) -> bytes:
        cursor = encoded.event.id if session.width == 1 else session.cursor()
        return b"id: " + cursor.encode() + b"\n" + encoded.sse_data_body


def sse_wire(*, plain: bool, data_only: bool) -> SSEWire:
    """The SSE wire of a stream: a class per message mode, so that rendering an event
    asks nothing (it runs once per event and subscriber)."""
    return SSEDataWire(plain=plain) if data_only else SSEWire(plain=plain)


class WebSocketWire:
    """SPEC §5 messages, one JSON object per text frame."""

    def event(self, encoded: EncodedEvent, session: Session) -> str:
        return encoded.ws_text

    def subscribed(
        self, channel: str, recovered: bool, position: Position, rid: str | int | None
    ) -> str:
        return protocol.encode(
            protocol.subscribed_message(
                channel, recovered=recovered, position=str(position), rid=rid
            )
        )

    def unsubscribed(self, channel: str, rid: str | int | None) -> str:
        return protocol.encode(protocol.unsubscribed_message(channel, rid))

    def reset(self, channel: str, reason: str, position: Position) -> str:
        return protocol.encode(protocol.reset_message(channel, reason, str(position)))

    def disconnect(self, reason: str) -> str:
        return protocol.encode(protocol.disconnect_message(reason))

    def position(self, session: Session) -> None:
        return None


class FramedWebSocketWire(WebSocketWire):
    """:class:`WebSocketWire` for a transport that writes frames itself.

    Events come as complete WebSocket frames (``bytes``), encoded once per event for
    every subscriber; control messages stay text (``str``) and are framed when written.
    """

    def event(self, encoded: EncodedEvent, session: Session) -> bytes:  # type: ignore[override]
        return encoded.ws_frame


class WebSocketDataWire(WebSocketWire):
    """:class:`WebSocketWire` of a ``message="data"`` route: ``{"type": "event", "data":
    <the event's data>}``."""

    def event(self, encoded: EncodedEvent, session: Session) -> str:
        return encoded.ws_data_text


class FramedDataWebSocketWire(FramedWebSocketWire):
    """:class:`FramedWebSocketWire` of a ``message="data"`` route."""

    def event(self, encoded: EncodedEvent, session: Session) -> bytes:  # type: ignore[override]
        return encoded.ws_data_frame


def websocket_wire(*, framed: bool, data_only: bool) -> WebSocketWire:
    """The WebSocket wire of a stream (see :func:`sse_wire`)."""
    if framed:
        return FramedDataWebSocketWire() if data_only else FramedWebSocketWire()
    return WebSocketDataWire() if data_only else WebSocketWire()
