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
from tidings.core.websocket_close import Do, Happened, Lifecycle
from tidings.core.websocket_close import State as _State

__all__ = ["Handler", "State", "WebSocketProtocol"]

# Re-exported: the state is the protocol's, its moves are core.websocket_close's table.
State = _State


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
        self._life = Lifecycle()
        self._reader = Reader(max_size)
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def state(self) -> _State:
        return self._life.state

    @property
    def writable(self) -> bool:
        """Connected, not closing, and not paused by the transport's flow control."""
        return self.state is _State.OPEN and not self._paused

    @property
    def open(self) -> bool:
        """Connected, and no close frame sent or received yet."""
        return self.state is _State.OPEN

    def write(self, data: bytes) -> None:
        """Write already-framed bytes (one frame or several joined); a no-op unless open.

        Writes are never refused for flow control: a caller that cares checks
        ``writable`` and waits for ``Handler.on_drain``.
        """
        if self.state is _State.OPEN and self.transport is not None:
            self.transport.write(data)

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self.write(text_frame(text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake: send a close frame (only once) and wait for the
        client's, which closes the transport; abort it after ``close_timeout`` seconds.
        """
        if self.state is not _State.CONNECTING:  # nothing to close before the transport
            self._step(Happened.CLOSE, code, reason)

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._step(Happened.OPENED)

    def data_received(self, data: bytes) -> None:
        if self.state is not _State.OPEN and self.state is not _State.CLOSING:
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
        if self.transport is None and self.state is _State.CLOSED:
            return  # already lost: asyncio says it once, but the handler must hear it once
        self._step(Happened.LOST)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self.state is _State.OPEN:
            self.handler.on_drain()

    # --- internals ---------------------------------------------------------------------

    def _deliver(self, events: list[Message | Close]) -> None:
        # State is checked per event: a handler may close the connection mid-batch.
        for event in events:
            if isinstance(event, Close):
                self._closed_by_peer(event)
            elif self.state is not _State.OPEN:
                # After our close frame nothing more may be sent, pongs included.
                continue
            elif event.opcode == OP_PING:
                self.write(encode_frame(OP_PONG, cast(bytes, event.data)))
            elif event.opcode != OP_PONG:
                self.handler.on_message(event.data)

    def _step(self, happened: Happened, code: int | None = 1000, reason: str = "") -> None:
        """Move the lifecycle and carry out what its table says, in order."""
        do = self._life.handle(happened)
        if not do:
            return
        transport = self.transport
        if transport is not None:
            if do & Do.SEND_CLOSE:
                transport.write(close_frame(code, reason))
            if do & Do.ECHO_CLOSE:
                transport.write(close_frame(code))
            if do & Do.HALF_CLOSE:
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    self._step(Happened.NO_EOF)
            if do & Do.CLOSE_TRANSPORT:
                transport.close()
        if do & Do.START_TIMER and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.close_timeout, self._step, Happened.DEADLINE)
        if do & Do.ABORT_TRANSPORT:
            self._timer = None
            if transport is not None:
                transport.abort()
        if do & Do.STOP_TIMER:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.transport = None
        if do & Do.REPORT_CLOSED:
            self.handler.on_closed()

    def _closed_by_peer(self, event: Close) -> None:
        # An empty close (1005) is answered with an empty one.
        self._step(Happened.PEER_CLOSE, event.code)

    def _fail(self, exc: WebSocketError) -> None:
        """Fail the connection (RFC 6455 §7.1.7) on the client's protocol violation: the
        reader now ignores input, the client's close frame included, so its answer to
        ours can only be seen as EOF."""
        self._step(Happened.FAIL, exc.close_code, exc.reason)
