"""A test-only WebSocket echo server on the data plane's protocol.

It answers the upgrade the way the data plane's front door does (parse the request head
with httptools, check it with ``handshake_key``, write ``accept_response``, switch the
transport over to a :class:`WebSocketProtocol` and hand it the bytes that came with the
request) and echoes every message back, as the Autobahn fuzzing client expects.
"""

from __future__ import annotations

import asyncio

import httptools

from tidings.core.websocket import (
    OP_BINARY,
    HandshakeError,
    accept_response,
    encode_frame,
    handshake_key,
    text_frame,
)
from tidings.dataplane.websocket import WebSocketProtocol


class EchoHandler:
    """Sends every message back as it came: text as text, binary as binary."""

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self.protocol = protocol
        self.closed = asyncio.Event()

    def on_message(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self.protocol.write(text_frame(data))
        else:
            self.protocol.write(encode_frame(OP_BINARY, data))

    def on_drain(self) -> None:
        pass

    def on_closed(self) -> None:
        self.closed.set()


class UpgradeProtocol(asyncio.Protocol):
    """Reads one upgrade request, then hands the connection to a WebSocketProtocol."""

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.max_size = max_size
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_complete = False
        self.handlers: list[EchoHandler] = []

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_complete = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self.refuse(b"malformed request")
        else:
            # httptools raises HttpParserUpgrade at the end of an upgrade request's head:
            # a complete head that did not is a plain HTTP request.
            if self.head_complete:
                self.refuse(b"not a WebSocket upgrade")

    def upgrade(self, leftover: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            key = handshake_key(self.headers)
        except HandshakeError as exc:
            self.refuse(exc.message.encode())
            return
        transport.write(accept_response(key, [(b"server", b"tidings-autobahn-echo")]))
        protocol = WebSocketProtocol(max_size=self.max_size)
        handler = EchoHandler(protocol)
        protocol.handler = handler
        self.handlers.append(handler)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if leftover:
            protocol.data_received(leftover)

    def refuse(self, reason: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(reason), reason)
        )
        self.transport.close()
