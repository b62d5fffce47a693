"""A native WebSocket outlet: a :class:`WebSocketProtocol`'s handler for a stream.

Events arrive already framed (one encoding per event for every subscriber, the
:class:`~tidings.core.wire.FramedWebSocketWire`); control messages are framed on the way
out; all that one flush hands over is one ``transport.write``.
"""

from __future__ import annotations

from tidings.core.session import Frame
from tidings.core.websocket import text_frame
from tidings.dataplane.websocket import WebSocketProtocol
from tidings.streams.websocket import WebSocketStream

__all__ = ["WebSocketOutlet"]


class WebSocketOutlet:
    """The stream's outlet, and the :class:`~tidings.dataplane.websocket.Handler` of its
    socket."""

    __slots__ = ("socket", "stream")

    def __init__(self, stream: WebSocketStream, socket: WebSocketProtocol) -> None:
        self.stream = stream
        self.socket = socket

    # -- Outlet -----------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return self.socket.writable

    def send(self, frames: list[Frame]) -> None:
        first = frames[0]
        if len(frames) == 1 and isinstance(first, bytes):
            self.socket.write(first)
        else:
            self.socket.write(
                b"".join(f if isinstance(f, bytes) else text_frame(f) for f in frames)
            )

    def finish(self, code: int, reason: str) -> None:
        self.socket.close(code, reason)

    def pause_reading(self) -> None:
        if self.socket.transport is not None:
            self.socket.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.socket.transport is not None:
            self.socket.transport.resume_reading()

    # -- Handler ----------------------------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        self.stream.on_message(data)

    def on_drain(self) -> None:
        self.stream.on_drain()

    def on_closed(self) -> None:
        self.stream.closed()
