"""Sans-I/O pieces of a minimal WebSocket client (RFC 6455) for the load generator.

Thousands of connections share one core, so this does only what a benchmark client
needs: build the opening handshake and check the answer, mask and frame client
messages, and split the server's byte stream into messages (joining fragments, passing
control frames through). No extensions, no subprotocols, no UTF-8 validation. It never
touches a socket: bytes in, messages out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "close_code",
    "encode_frame",
    "handshake",
    "handshake_status",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handshake(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """The opening request, and the ``Sec-WebSocket-Accept`` value the answer must carry."""
    key = base64.b64encode(os.urandom(16)).decode()
    accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return request.encode(), accept


def handshake_status(head: bytes, accept: bytes) -> int:
    """The status of the server's answer (without its blank line); 101 only when the
    upgrade is complete and correct, else the HTTP status (or 0 if it is not HTTP)."""
    try:
        status = int(head[9:12])
    except ValueError:
        return 0
    if status != 101:
        return status
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            return 101 if value.strip() == accept else 0
    return 0


def encode_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One masked, final client frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    if not payload:
        return header + mask
    # XOR with the repeated mask as one big integer: no per-byte Python loop.
    repeated = (mask * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return header + mask + masked.to_bytes(length, "big")


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload, if it has one."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class FrameReader:
    """Server frames in, ``(opcode, payload)`` messages out, fragments joined.

    Control frames (close, ping, pong) come out as they arrive, even between the
    fragments of a message. Raises :class:`ValueError` on a masked server frame or
    a message over ``max_size``.
    """

    __slots__ = ("_buffer", "_fragments", "_opcode", "max_size")

    def __init__(self, max_size: int = 1 << 24) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        messages: list[tuple[int, bytes]] = []
        position = 0
        size = len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            if second & 0x80:
                raise ValueError("the server masked a frame")
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if length > self.max_size:
                raise ValueError(f"a frame of {length} bytes")
            end = start + length
            if end > size:
                break
            payload = bytes(buffer[start:end])
            position = end
            opcode = first & 0x0F
            final = bool(first & 0x80)
            if opcode >= CLOSE or (final and opcode and not self._fragments):
                messages.append((opcode, payload))
                continue
            if opcode:
                self._opcode = opcode
            self._fragments.append(payload)
            if final:
                messages.append((self._opcode, b"".join(self._fragments)))
                self._fragments = []
        if position:
            del buffer[:position]
        return messages
