"""A native SSE outlet: the response body written straight onto the transport.

The front protocol has admitted the request and written the response head; from then on
this object is the transport's protocol. Frames are written as one HTTP chunk per flush;
a paused transport (a client that does not read) is not ``writable``, which leaves them
in the session's bounded outbox, where the slow-consumer policy applies.
"""

from __future__ import annotations

import asyncio

from tidings.connection import Connection
from tidings.core.session import Frame
from tidings.streams.sse import SSEStream, join

__all__ = ["SSEOutlet"]

_LAST_CHUNK = b"0\r\n\r\n"


class SSEOutlet(asyncio.Protocol):
    """The transport's protocol and the stream's outlet; see the module docstring."""

    __slots__ = ("_abort", "_paused", "stream", "transport")

    def __init__(self, stream: SSEStream, transport: asyncio.Transport) -> None:
        self.stream = stream
        self.transport = transport
        self._paused = False
        self._abort: asyncio.TimerHandle | None = None

    @property
    def writable(self) -> bool:
        return not self._paused

    def send(self, frames: list[Frame]) -> None:
        body = join(frames)
        self.transport.write(b"%x\r\n" % len(body) + body + b"\r\n")

    def finish(self, code: int, reason: str) -> None:
        # The disconnect frame is out: end the body properly, and never wait long on a
        # peer that stopped reading.
        self.transport.write(_LAST_CHUNK)
        self.transport.close()
        loop = asyncio.get_running_loop()
        self._abort = loop.call_later(Connection.close_timeout, self.transport.abort)

    # -- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        pass  # a stream's request has no body; a client has nothing more to say

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.stream.on_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()
        self.stream.closed()
