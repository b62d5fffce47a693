"""The asyncio protocol of one WebSocket connection, once its upgrade has been answered.

:class:`WebSocketProtocol` moves bytes between an asyncio transport and the Sans-I/O
:class:`~tidings.core.websocket.Reader`: it hands complete messages to a
:class:`Handler`, answers pings, and runs the closing handshake with a deadline. It
holds no task and no buffer of its own (writes go straight to the transport, whose
flow control is reported through ``writable`` and ``Handler.on_drain``), so an idle
connection costs two small objects. It never parses HTTP: whoever answered the upgrade
request switches the transport over to it.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Protocol, cast

from tidings.core.websocket import (
    OP_PING,
    OP_PONG,
    Close,
    Message,
    Reader,
    WebSocketError,
    close_frame,
    encode_frame,
    text_frame,
)

__all__ = ["Handler", "State", "WebSocketProtocol"]


class Handler(Protocol):
    """What a :class:`WebSocketProtocol` tells the application.

    Callbacks run inside the protocol's own callbacks and may call its ``write``,
    ``send_text`` and ``close`` straight away.
    """

    def on_message(self, data: str | bytes) -> None:
        """A complete text (``str``) or binary (``bytes``) message arrived."""

    def on_drain(self) -> None:
        """The transport, paused by flow control, takes writes again."""

    def on_closed(self) -> None:
        """The connection is gone. Called exactly once, last."""


class _NoHandler:
    """Stands in until the real handler is set: a connection dropped this early is quiet."""

    def on_message(self, data: str | bytes) -> None:
        pass

    def on_drain(self) -> None:
        pass

    def on_closed(self) -> None:
        pass


class State(enum.Enum):
    """Where a connection is in its life (RFC 6455 §4, §7).

    CONNECTING -> OPEN on ``connection_made``; OPEN -> CLOSING when we send a close
    frame first; OPEN or CLOSING -> CLOSED when the closing handshake is done, and any
    state -> CLOSED when the transport is lost.
    """

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class WebSocketProtocol(asyncio.Protocol):
    """One server-side WebSocket connection on an asyncio transport.

    Text and binary messages go to ``handler.on_message``; pings are answered at once
    with a pong carrying the same payload; pongs are ignored. When the client closes,
    its close code is echoed and the transport closed (RFC 6455 §7.1.1: the server
    drops TCP first). When we close, the client's close frame is awaited for
    ``close_timeout`` seconds, after which the transport is aborted; the same deadline
    bounds the flushing of our last bytes, so a client that stopped reading never holds
    a connection open. A protocol violation by the client sends the matching close
    code, stops reading and half-closes the socket.
    """

    close_timeout: float = 2.0

    def __init__(self, handler: Handler | None = None, *, max_size: int = 1 << 20) -> None:
        self.handler: Handler = handler if handler is not None else _NoHandler()
        self.transport: asyncio.Transport | None = None
        self.state = State.CONNECTING
        self._reader = Reader(max_size)
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed_reported = False

    @property
    def writable(self) -> bool:
        """Connected, not closing, and not paused by the transport's flow control."""
        return self.state is State.OPEN and not self._paused

    @property
    def open(self) -> bool:
        """Connected, and no close frame sent or received yet."""
        return self.state is State.OPEN

    def write(self, data: bytes) -> None:
        """Write already-framed bytes (one frame or several joined); a no-op unless open.

        Writes are never refused for flow control: a caller that cares checks
        ``writable`` and waits for ``Handler.on_drain``.
        """
        if self.state is State.OPEN and self.transport is not None:
            self.transport.write(data)

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self.write(text_frame(text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake: send a close frame (only once) and wait for the
        client's, which closes the transport; abort it after ``close_timeout`` seconds.
        """
        if self.state is not State.OPEN or self.transport is None:
            return
        self.transport.write(close_frame(code, reason))
        self.state = State.CLOSING
        self._start_close_timer()

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.state = State.OPEN

    def data_received(self, data: bytes) -> None:
        if self.state is not State.OPEN and self.state is not State.CLOSING:
            return
        try:
            events = self._reader.feed(data)
        except WebSocketError as exc:
            self._deliver(exc.events)
            self._fail(exc)
            return
        self._deliver(events)

    def eof_received(self) -> bool | None:
        # The client half-closed: whether or not a close frame came first, there is
        # nothing left to wait for, so let the transport close itself.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = State.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        if not self._closed_reported:
            self._closed_reported = True
            self.handler.on_closed()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self.state is State.OPEN:
            self.handler.on_drain()

    # --- internals ---------------------------------------------------------------------

    def _deliver(self, events: list[Message | Close]) -> None:
        # State is checked per event: a handler may close the connection mid-batch.
        for event in events:
            if isinstance(event, Close):
                self._closed_by_peer(event)
            elif self.state is not State.OPEN:
                # After our close frame nothing more may be sent, pongs included.
                continue
            elif event.opcode == OP_PING:
                self.write(encode_frame(OP_PONG, cast(bytes, event.data)))
            elif event.opcode != OP_PONG:
                self.handler.on_message(event.data)

    def _closed_by_peer(self, event: Close) -> None:
        transport = self.transport
        if transport is None or self.state is State.CLOSED:
            return
        if self.state is State.OPEN:
            # Echo the code; an empty close (1005) is answered with an empty one.
            transport.write(close_frame(event.code))
        self.state = State.CLOSED
        transport.close()
        self._start_close_timer()

    def _fail(self, exc: WebSocketError) -> None:
        """Fail the connection (RFC 6455 §7.1.7) on the client's protocol violation."""
        self.close(exc.close_code, exc.reason)
        transport = self.transport
        if self.state is not State.CLOSING or transport is None:
            return
        # The reader now ignores input, the client's close frame included, so its
        # answer to ours can only be seen as EOF. Half-closing tells it we are done
        # while keeping the server the first to drop TCP.
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self.state = State.CLOSED
            transport.close()

    def _start_close_timer(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.close_timeout, self._abort)

    def _abort(self) -> None:
        self._timer = None
        self.state = State.CLOSED
        if self.transport is not None:
            self.transport.abort()
