"""A raw WebSocket client for hostile-input tests: a real HTTP upgrade on an asyncio
stream, then frames built by hand (any opcode, FIN and RSV bits, masked or not, any
announced length), and a reader of the frames the server sends back.

Nothing here checks what it sends: that is the point. It only reads what the server
answers, so that a test can say which close code a broken frame earned.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

MASK = b"\x5a\x17\xc3\x9e"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length: int | None = None,
) -> bytes:
    """One client frame. ``length`` announces a size other than the payload's (a frame
    header that promises more than follows); ``mask=None`` sends it unmasked."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not None else 0
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 0x10000:
        header = bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")
    if mask is None:
        return header + payload
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


def upgrade_request(path: str = "/ws", *, host: str = "127.0.0.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


@dataclass
class Closed:
    """How the server ended the connection: its close frame's code and reason (``code``
    None: no close frame, the TCP connection just ended), and the text messages it sent
    before, parsed from JSON."""

    code: int | None
    reason: str
    messages: list[dict[str, Any]] = field(default_factory=list)


class RawWebSocket:
    """A WebSocket client connection that sends whatever bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str = "/ws", *, then: bytes = b"") -> RawWebSocket:
        """Open a connection, send the upgrade request (with ``then`` right after it, in
        the same write) and read the ``101`` answer."""
        ws = await cls.open(port, upgrade_request(path) + then)
        await ws.read_upgrade()
        return ws

    @classmethod
    async def open(cls, port: int, data: bytes) -> RawWebSocket:
        """Open a connection and send ``data``, reading nothing."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        return cls(reader, writer)

    async def read_upgrade(self) -> None:
        """Read the server's ``101`` answer."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            self.writer.close()
            raise AssertionError(f"upgrade refused: {head!r}")

    async def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def send_json(self, message: Any) -> None:
        await self.send(frame(OP_TEXT, json.dumps(message).encode()))

    async def read_frame(self) -> tuple[int, bytes] | None:
        """The server's next frame as (opcode, payload); None when the connection ended
        (servers never mask nor fragment here)."""
        try:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def read_message(self) -> dict[str, Any]:
        """The next JSON text message; a close frame or the end is an AssertionError."""
        while True:
            got = await self.read_frame()
            assert got is not None, "the server ended the connection"
            opcode, payload = got
            assert opcode != OP_CLOSE, f"closed: {payload!r}"
            if opcode == OP_TEXT:
                message = json.loads(payload)
                assert isinstance(message, dict)
                return message

    async def closed(self) -> Closed:
        """Read until the server's close frame or the end of the connection."""
        messages: list[dict[str, Any]] = []
        while True:
            got = await self.read_frame()
            if got is None:
                return Closed(None, "", messages)
            opcode, payload = got
            if opcode == OP_TEXT:
                messages.append(json.loads(payload))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return Closed(code, payload[2:].decode(errors="replace"), messages)

    async def ended(self) -> None:
        """Wait for the server to end the TCP connection (after a close handshake)."""
        while await self.reader.read(65536):
            pass

    def abort(self) -> None:
        """Drop the TCP connection at once, mid-frame if one is being sent."""
        self.writer.transport.abort()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
