"""WebSocket (RFC 6455) for the server side, Sans-I/O: the opening handshake and framing.

:func:`handshake_key` checks a client's upgrade request and :func:`accept_response` is
the server's answer to it; :func:`encode_frame` and its helpers build the unmasked
frames a server sends; :class:`Reader` turns the bytes a client sends, in any chunking,
into :class:`Message` and :class:`Close` values, and raises :class:`WebSocketError`,
carrying the close code to answer with, on anything RFC 6455 says must fail the
connection.

No extension (permessage-deflate) and no subprotocol is ever negotiated, so the RSV bits
must always be clear. This module never does I/O, never imports asyncio and never keeps
more than one frame header (or one control frame, at most 131 bytes) of raw input: data
frame payloads are unmasked and, for text, UTF-8 checked as they arrive.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
from collections.abc import Iterable
from typing import Final, NamedTuple

from tidings.errors import HandshakeError, WebSocketError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Close",
    "HandshakeError",
    "Message",
    "Reader",
    "WebSocketError",
    "accept_key",
    "accept_response",
    "close_frame",
    "encode_frame",
    "handshake_key",
    "text_frame",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTROL_MAX: Final = 125  # RFC 6455 §5.5: a control frame's payload fits in 7 bits
_CLOSE_REASON_MAX: Final = _CONTROL_MAX - 2
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class Message(NamedTuple):
    """A complete message or a ping/pong from the peer.

    ``data`` is ``str`` for :data:`OP_TEXT` and ``bytes`` for :data:`OP_BINARY`,
    :data:`OP_PING` and :data:`OP_PONG`.
    """

    opcode: int
    data: str | bytes


class Close(NamedTuple):
    """The peer's close frame. ``code`` is None for an empty payload (reported as 1005)."""

    code: int | None
    reason: str


# --- opening handshake ------------------------------------------------------------------


def _tokens(values: list[bytes]) -> set[str]:
    """The comma-separated, case-insensitive tokens of every value of one header."""
    return {
        token.strip().lower()
        for value in values
        for token in value.decode("latin-1").split(",")
        if token.strip()
    }


def handshake_key(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Check a client's upgrade request and return its ``Sec-WebSocket-Key``.

    ``headers`` are (name, value) pairs with lowercase names, as in an ASGI scope. The
    request must ask to upgrade to ``websocket`` over a ``Connection: upgrade``, speak
    version 13 and carry a key that is the base64 of exactly 16 bytes (RFC 6455 §4.2.1).
    The method, path and ``Host`` are the caller's to check. Raises
    :class:`HandshakeError`.
    """
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name in (b"upgrade", b"connection", b"sec-websocket-version", b"sec-websocket-key"):
            found.setdefault(name, []).append(value)
    if "websocket" not in _tokens(found.get(b"upgrade", [])):
        raise HandshakeError("missing 'Upgrade: websocket' header")
    if "upgrade" not in _tokens(found.get(b"connection", [])):
        raise HandshakeError("missing 'Connection: Upgrade' header")
    versions = found.get(b"sec-websocket-version", [])
    if [version.strip() for version in versions] != [b"13"]:
        raise HandshakeError("unsupported Sec-WebSocket-Version: only 13 is supported")
    keys = found.get(b"sec-websocket-key", [])
    if len(keys) != 1:
        raise HandshakeError("expected exactly one Sec-WebSocket-Key header")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise HandshakeError("Sec-WebSocket-Key must be the base64 of 16 bytes")
    return key.decode("ascii")


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value answering ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def accept_response(key: str, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """The whole ``101 Switching Protocols`` response accepting the handshake for ``key``.

    ``extra_headers`` are appended as given; a name or value holding CR or LF raises
    ``ValueError`` rather than letting a header be smuggled in. No extension or
    subprotocol header is ever added.
    """
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_key(key).encode("ascii"),
    ]
    for name, value in extra_headers:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value:
            raise ValueError("a response header cannot contain CR or LF")
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# --- frames the server sends ------------------------------------------------------------


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked frame (servers never mask, RFC 6455 §5.1).

    Raises ``ValueError`` for an unknown opcode, or a control frame that is fragmented
    or carries more than 125 bytes.
    """
    length = len(payload)
    if opcode >= OP_CLOSE:
        if opcode > OP_PONG:
            raise ValueError(f"unknown opcode {opcode}")
        if length > _CONTROL_MAX or not fin:
            raise ValueError("a control frame must be whole and carry at most 125 bytes")
    elif opcode > OP_BINARY or opcode < 0:
        raise ValueError(f"unknown opcode {opcode}")
    first = (0x80 | opcode) if fin else opcode
    if length < 126:
        header = bytes((first, length))
    elif length < 0x10000:
        header = bytes((first, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + length.to_bytes(8, "big")
    return header + payload


def text_frame(text: str) -> bytes:
    """A whole text message in one frame."""
    return encode_frame(OP_TEXT, text.encode())


def _close_code_is_valid(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 §7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    """A close frame; ``code=None`` sends an empty payload (no code, no reason).

    ``reason`` is cut to the 123 bytes of UTF-8 that fit beside the code, never in the
    middle of a character. A code that must never go on the wire (1005, 1006, 1015,
    anything outside 1000-4999) raises ``ValueError``; so does a reason without a code.
    """
    if code is None:
        if reason:
            raise ValueError("a close frame without a code cannot carry a reason")
        return encode_frame(OP_CLOSE, b"")
    # 1012-1014 (restart, try again later, bad gateway) are registered for servers to
    # send, although a peer sending them to us is refused with the unregistered codes.
    if not (_close_code_is_valid(code) or 1012 <= code <= 1014):
        raise ValueError(f"close code {code} cannot be sent")
    encoded = reason.encode()
    if len(encoded) > _CLOSE_REASON_MAX:
        # Dropping the incomplete tail leaves whole characters only.
        encoded = encoded[:_CLOSE_REASON_MAX].decode(errors="ignore").encode()
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + encoded)


# --- frames the client sends ------------------------------------------------------------


def _unmask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, starting ``offset`` bytes into the mask."""
    length = len(data)
    if not length:
        return b""
    if offset:
        mask = mask[offset:] + mask[:offset]
    # One big-integer XOR instead of a Python loop over the bytes.
    stream = (mask * ((length >> 2) + 1))[:length]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        length, "little"
    )


def _decode_close(payload: bytes) -> Close:
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise WebSocketError(1002, "close frame payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not _close_code_is_valid(code):
        raise WebSocketError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise WebSocketError(1007, "close reason is not valid UTF-8") from None
    return Close(code, reason)


class Reader:
    """Incremental parser of the frames a client sends to a server.

    :meth:`feed` takes bytes as they arrive, in any chunking, and returns the messages
    they complete: text as ``str``, binary, pings and pongs as ``bytes``, and at most
    one :class:`Close`, after which it reads nothing more. A message (all of its
    fragments) larger than ``max_size`` bytes is refused from its frame header, before
    its payload is read.
    """

    __slots__ = (
        "_binary_parts",
        "_buffer",
        "_decoder",
        "_done",
        "_frame_fin",
        "_mask",
        "_mask_offset",
        "_message_opcode",
        "_remaining",
        "_size",
        "_text_parts",
        "max_size",
    )

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.max_size = max_size
        # Raw input not parsed yet: an incomplete header or an incomplete control frame.
        self._buffer = b""
        # Set by a close frame or an error: nothing more is read.
        self._done = False
        # The data frame whose payload is being read (``_remaining`` > 0).
        self._remaining = 0
        self._frame_fin = False
        self._mask = b""
        self._mask_offset = 0
        # The message being assembled: its opcode (0 when none), size and pieces.
        self._message_opcode = 0
        self._size = 0
        self._text_parts: list[str] = []
        self._binary_parts: list[bytes] = []
        self._decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> list[Message | Close]:
        """Parse ``data`` and return the messages it completes, in order.

        Raises :class:`WebSocketError` when the client breaks RFC 6455; the error's
        ``events`` holds what this call completed before that. After a
        :class:`Close` or an error, returns ``[]``.
        """
        if self._done:
            return []
        events: list[Message | Close] = []
        try:
            self._parse(data, events)
        except WebSocketError as exc:
            self._done = True
            self._buffer = b""
            self._text_parts = []
            self._binary_parts = []
            self._decoder = None
            exc.events = events
            raise
        return events

    def _parse(self, data: bytes, events: list[Message | Close]) -> None:
        buf = self._buffer + data if self._buffer else data
        self._buffer = b""
        pos = 0
        end = len(buf)
        while pos < end:
            if self._remaining:
                pos = self._read_payload(buf, pos, end, events)
                continue
            if end - pos < 2:
                break
            first = buf[pos]
            second = buf[pos + 1]
            if first & 0x70:
                raise WebSocketError(1002, "reserved bits set: no extension was negotiated")
            if not second & 0x80:
                raise WebSocketError(1002, "a client frame must be masked")
            fin = first & 0x80
            opcode = first & 0x0F
            length = second & 0x7F

            if opcode >= OP_CLOSE:
                if opcode > OP_PONG:
                    raise WebSocketError(1002, f"unknown opcode {opcode}")
                if not fin:
                    raise WebSocketError(1002, "fragmented control frame")
                if length > _CONTROL_MAX:
                    raise WebSocketError(1002, "control frame payload longer than 125 bytes")
                stop = pos + 6 + length
                if stop > end:
                    break
                payload = _unmask(buf[pos + 6 : stop], buf[pos + 2 : pos + 6])
                pos = stop
                if opcode == OP_CLOSE:
                    events.append(_decode_close(payload))
                    self._done = True
                    return
                events.append(Message(opcode, payload))
                continue

            if opcode > OP_BINARY:
                raise WebSocketError(1002, f"unknown opcode {opcode}")
            if opcode == OP_CONT:
                if not self._message_opcode:
                    raise WebSocketError(1002, "continuation frame without a message")
            elif self._message_opcode:
                raise WebSocketError(1002, "new message before the fragmented one ended")
            if length == 126:
                if pos + 4 > end:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 8
            elif length == 127:
                if pos + 10 > end:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise WebSocketError(1002, "frame length with its top bit set")
                start = pos + 14
            else:
                start = pos + 6
            size = self._size + length
            # Refused as soon as the length is known, before waiting for anything more.
            if size > self.max_size:
                raise WebSocketError(1009, f"message larger than {self.max_size} bytes")
            if start > end:
                break
            mask = buf[start - 4 : start]
            stop = start + length
            if fin and opcode and stop <= end:
                # The common case: a whole unfragmented message in this chunk.
                payload = _unmask(buf[start:stop], mask)
                pos = stop
                if opcode == OP_TEXT:
                    try:
                        events.append(Message(OP_TEXT, payload.decode()))
                    except UnicodeDecodeError:
                        raise WebSocketError(1007, "invalid UTF-8 in a text message") from None
                else:
                    events.append(Message(OP_BINARY, payload))
                continue
            if opcode:
                self._message_opcode = opcode
                self._decoder = _Utf8Decoder() if opcode == OP_TEXT else None
            self._size = size
            self._frame_fin = bool(fin)
            self._mask = bytes(mask)
            self._mask_offset = 0
            self._remaining = length
            pos = start
            if not length:
                self._end_frame(events)
        if pos < end:
            self._buffer = bytes(buf[pos:])

    def _read_payload(self, buf: bytes, pos: int, end: int, events: list[Message | Close]) -> int:
        """Take what ``buf`` holds of the current data frame's payload; the new position."""
        count = min(self._remaining, end - pos)
        chunk = _unmask(buf[pos : pos + count], self._mask, self._mask_offset)
        self._mask_offset = (self._mask_offset + count) & 3
        self._remaining -= count
        if self._decoder is not None:
            # Decoding as bytes arrive fails on the first invalid byte, not at the end.
            try:
                text = self._decoder.decode(chunk)
            except UnicodeDecodeError:
                raise WebSocketError(1007, "invalid UTF-8 in a text message") from None
            self._text_parts.append(text)
        else:
            self._binary_parts.append(chunk)
        if not self._remaining:
            self._end_frame(events)
        return pos + count

    def _end_frame(self, events: list[Message | Close]) -> None:
        if not self._frame_fin:
            return
        if self._decoder is not None:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise WebSocketError(1007, "text message ends inside a character") from None
            data: str | bytes = "".join(self._text_parts)
            self._text_parts = []
        else:
            data = b"".join(self._binary_parts)
            self._binary_parts = []
        events.append(Message(self._message_opcode, data))
        self._message_opcode = 0
        self._size = 0
        self._decoder = None
