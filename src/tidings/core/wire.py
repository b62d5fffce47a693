"""The two wire formats a :class:`~tidings.core.session.Session` renders frames in."""

from __future__ import annotations

import orjson

from tidings.core import protocol, sse
from tidings.core.events import EncodedEvent, Position
from tidings.core.session import Session

__all__ = ["FramedWebSocketWire", "SSEWire", "WebSocketWire"]


class SSEWire:
    """SPEC §4 frames. Each event's ``id:`` is the stream's resume cursor."""

    def __init__(self, *, plain: bool = False, data_only: bool = False) -> None:
        self.plain = plain
        #: A ``message="data"`` route: frames carry the event's data, not the event.
        self.data_only = data_only

    def event(self, encoded: EncodedEvent, session: Session) -> bytes:
        if self.data_only:
            cursor = encoded.event.id if session.width == 1 else session.cursor()
            return b"id: " + cursor.encode() + b"\n" + encoded.sse_data_body
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


class WebSocketWire:
    """SPEC §5 messages, one JSON object per text frame."""

    def __init__(self, *, data_only: bool = False) -> None:
        #: A ``message="data"`` route: ``event`` messages carry the event's data only.
        self.data_only = data_only

    def event(self, encoded: EncodedEvent, session: Session) -> str:
        return encoded.ws_data_text if self.data_only else encoded.ws_text

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
        return encoded.ws_data_frame if self.data_only else encoded.ws_frame
