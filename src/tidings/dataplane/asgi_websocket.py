"""uvicorn's WebSocket protocol, reading a client's frames only once its handshake is
answered.

A client may send frames right after its upgrade request, before the ``101`` (RFC 6455
§4.1 says it must wait; nothing makes it). uvicorn's protocol hands them to websockets
while the application is still admitting the connection, and a protocol error then has
no close frame to send: an assertion fails inside uvicorn, logged as a fatal error, and
the client sees the TCP connection drop with no close code. Here what arrives before the
handshake is answered is held, with reading paused so that it stays one read at most,
and read once it is answered: frames are served, garbage gets its 1002. Used for every
WebSocket that ``tidings serve`` leaves to the ASGI app.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["HandshakeFirstWebSocketProtocol"]


class HandshakeFirstWebSocketProtocol(WebSocketsSansIOProtocol):
    """:class:`WebSocketsSansIOProtocol` that holds early bytes; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._early: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        if self.handshake_initiated and not self.handshake_complete:
            self._early.append(data)
            self.transport.pause_reading()
            return
        super().data_received(data)

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self._early and self.handshake_complete:
            early = b"".join(self._early)
            self._early.clear()
            if self.close_sent or self.transport.is_closing():
                return  # refused before the handshake: nothing more is read
            self.transport.resume_reading()
            super().data_received(early)
