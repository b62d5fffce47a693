"""What a transport gives a stream: a place to put frames, and a way to end."""

from __future__ import annotations

from typing import Protocol

from tidings.core.session import Frame

__all__ = ["Outlet"]


class Outlet(Protocol):
    """The write side of one stream's transport.

    A stream hands frames over only while the outlet is ``writable``; otherwise they wait
    in the session's bounded outbox, where the slow-consumer policy applies, and the
    transport calls the stream's ``on_drain`` when it takes writes again.
    """

    @property
    def writable(self) -> bool:
        """True while the transport takes writes without buffering them."""

    def send(self, frames: list[Frame]) -> None:
        """Write ``frames`` now (as one write where the transport allows)."""

    def finish(self, code: int, reason: str) -> None:
        """End the stream after what was sent: the SSE body's last chunk, or the WebSocket
        close frame with ``code`` and ``reason``. A peer that does not read by then is cut
        off after the close timeout."""
