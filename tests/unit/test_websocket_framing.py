"""RFC 6455 server side: the Sans-I/O handshake and framing, then the asyncio protocol on
a fake transport (the same protocol on real sockets is tests/autobahn)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ws_frames import MASK
from tests.ws_frames import frame as client_frame
from tidings.core.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    HandshakeError,
    Message,
    Reader,
    WebSocketError,
    accept_key,
    accept_response,
    close_frame,
    encode_frame,
    handshake_key,
    text_frame,
)
from tidings.dataplane.websocket import State, WebSocketProtocol


def masked(server_frame: bytes, mask: bytes = MASK) -> bytes:
    """The client's version of a frame :func:`encode_frame` built: same header, masked."""
    length = server_frame[1] & 0x7F
    header_size = {126: 4, 127: 10}.get(length, 2)
    header = bytes((server_frame[0], server_frame[1] | 0x80)) + server_frame[2:header_size]
    payload = server_frame[header_size:]
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def feed_all(reader: Reader, *chunks: bytes) -> list[Message | Close]:
    return [event for chunk in chunks for event in reader.feed(chunk)]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


# --- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header_size"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)],
)
def test_encode_frame_lengths_round_trip(length: int, header_size: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = encode_frame(OP_BINARY, payload)
    assert len(frame) == header_size + length
    assert frame[0] == 0x80 | OP_BINARY
    assert not frame[1] & 0x80  # servers never mask
    assert Reader(max_size=1 << 17).feed(masked(frame)) == [Message(OP_BINARY, payload)]


def test_encode_frame_without_fin_and_a_continuation() -> None:
    first = encode_frame(OP_TEXT, b"hel", fin=False)
    rest = encode_frame(OP_CONT, b"lo")
    assert first[0] == OP_TEXT
    assert rest[0] == 0x80 | OP_CONT
    assert Reader().feed(masked(first) + masked(rest)) == [Message(OP_TEXT, "hello")]


def test_text_frame() -> None:
    assert text_frame("hé") == b"\x81\x03h\xc3\xa9"


@pytest.mark.parametrize(
    ("opcode", "payload", "fin"),
    [(OP_PING, b"x" * 126, True), (OP_CLOSE, b"\x03\xe8", False), (3, b"", True), (11, b"", True)],
)
def test_encode_frame_refuses_what_a_peer_would_refuse(
    opcode: int, payload: bytes, fin: bool
) -> None:
    with pytest.raises(ValueError):
        encode_frame(opcode, payload, fin=fin)


def test_close_frame_codes() -> None:
    assert close_frame() == b"\x88\x02\x03\xe8"
    assert close_frame(None) == b"\x88\x00"
    assert close_frame(1001, "bye") == b"\x88\x05\x03\xe9bye"
    assert close_frame(1012)[2:4] == (1012).to_bytes(2, "big")


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_close_frame_refuses_codes_that_must_not_be_sent(code: int) -> None:
    with pytest.raises(ValueError):
        close_frame(code)


def test_close_frame_without_code_cannot_have_a_reason() -> None:
    with pytest.raises(ValueError):
        close_frame(None, "why")


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        ("a" * 200, "a" * 123),
        ("é" * 100, "é" * 61),  # 2 bytes each: 122 fit, the 62nd would need 124
        ("€" * 50, "€" * 41),  # 3 bytes each: exactly 123
        ("a" + "€" * 50, "a" + "€" * 40),  # 121 bytes: the 41st euro would split
        ("🎉" * 40, "🎉" * 30),  # 4 bytes each: 120
        ("short", "short"),
    ],
)
def test_close_frame_truncates_the_reason_on_a_character_boundary(reason: str, kept: str) -> None:
    frame = close_frame(1000, reason)
    assert len(frame) <= 2 + 125
    assert Reader().feed(masked(frame)) == [Close(1000, kept)]


# --- opening handshake ------------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD: list[tuple[bytes, bytes]] = [
    (b"host", b"example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", KEY.encode()),
    (b"sec-websocket-version", b"13"),
]


def with_header(name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [(n, v) for n, v in GOOD if n != name]
    return headers if value is None else [*headers, (name, value)]


def test_accept_key_rfc_6455_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_key_accepts_a_valid_request() -> None:
    assert handshake_key(GOOD) == KEY


@pytest.mark.parametrize(
    "headers",
    [
        with_header(b"upgrade", b"WebSocket"),
        with_header(b"upgrade", b"h2c, websocket"),
        with_header(b"connection", b"keep-alive, upgrade"),
        with_header(b"connection", b"UPGRADE"),
        with_header(b"sec-websocket-key", b"  " + KEY.encode() + b" "),
        [*with_header(b"connection", b"keep-alive"), (b"connection", b"Upgrade")],
    ],
)
def test_handshake_key_tokens_are_case_insensitive_lists(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert handshake_key(headers) == KEY


@pytest.mark.parametrize(
    "headers",
    [
        with_header(b"upgrade", None),
        with_header(b"upgrade", b"h2c"),
        with_header(b"upgrade", b"websockets"),
        with_header(b"connection", None),
        with_header(b"connection", b"keep-alive"),
        with_header(b"sec-websocket-version", None),
        with_header(b"sec-websocket-version", b"8"),
        with_header(b"sec-websocket-version", b"13, 8"),
        with_header(b"sec-websocket-key", None),
        with_header(b"sec-websocket-key", b"not base64!"),
        with_header(b"sec-websocket-key", base64.b64encode(b"x" * 15)),
        with_header(b"sec-websocket-key", base64.b64encode(b"x" * 17)),
        [*GOOD, (b"sec-websocket-key", base64.b64encode(b"y" * 16))],
        [],
    ],
)
def test_handshake_key_refuses_a_bad_request(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(HandshakeError) as caught:
        handshake_key(headers)
    assert caught.value.message


def test_accept_response() -> None:
    response = accept_response(KEY, [(b"server", b"tidings")])
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"server: tidings\r\n"
        b"\r\n"
    )


def test_accept_response_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        accept_response(KEY, [(b"x-a", b"1\r\nSet-Cookie: a=b")])


# --- reading client frames --------------------------------------------------------------

MIXED = (
    client_frame(OP_TEXT, "héllo ".encode(), fin=False)
    + client_frame(OP_PING, b"ping!", mask=b"\x00\xff\x10\x01")
    + client_frame(OP_CONT, "wörld €".encode(), fin=False, mask=b"\xaa\xbb\xcc\xdd")
    + client_frame(OP_CONT, "🎉".encode())
    + client_frame(OP_BINARY, bytes(range(200)))
    + client_frame(OP_PONG, b"")
    + client_frame(OP_TEXT, b"")
    + client_frame(OP_BINARY, b"\x00" * 70000, mask=b"\x01\x02\x03\x04")
    + client_frame(OP_CLOSE, close_payload(1001, "gone ✓".encode()))
)
MIXED_EVENTS: list[Message | Close] = [
    Message(OP_PING, b"ping!"),
    Message(OP_TEXT, "héllo wörld €🎉"),
    Message(OP_BINARY, bytes(range(200))),
    Message(OP_PONG, b""),
    Message(OP_TEXT, ""),
    Message(OP_BINARY, b"\x00" * 70000),
    Close(1001, "gone ✓"),
]


def test_reader_reads_a_mixed_stream_in_one_chunk() -> None:
    assert Reader().feed(MIXED) == MIXED_EVENTS


def test_reader_any_split_point_gives_the_same_messages() -> None:
    # Every boundary of everything but the big binary frame's payload (each of those
    # boundaries is the same case as its neighbours) keeps the test fast.
    big_start = MIXED.index(client_frame(OP_BINARY, b"\x00" * 70000, mask=b"\x01\x02\x03\x04"))
    points = [*range(big_start + 20), *range(len(MIXED) - 40, len(MIXED) + 1)]
    for point in points:
        assert feed_all(Reader(), MIXED[:point], MIXED[point:]) == MIXED_EVENTS, point


def test_reader_one_byte_at_a_time() -> None:
    stream = MIXED.replace(
        client_frame(OP_BINARY, b"\x00" * 70000, mask=b"\x01\x02\x03\x04"),
        client_frame(OP_BINARY, b"\x00" * 700, mask=b"\x01\x02\x03\x04"),
    )
    events = feed_all(Reader(), *(stream[i : i + 1] for i in range(len(stream))))
    assert events == [*MIXED_EVENTS[:5], Message(OP_BINARY, b"\x00" * 700), MIXED_EVENTS[-1]]


@st.composite
def client_streams(draw: st.DrawFn) -> tuple[bytes, list[Message | Close]]:
    """Messages, each cut into fragments with pings between them, as one byte stream."""
    stream = b""
    events: list[Message | Close] = []
    masks = st.binary(min_size=4, max_size=4)
    for _ in range(draw(st.integers(1, 4))):
        data: str | bytes = draw(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
        opcode = OP_TEXT if isinstance(data, str) else OP_BINARY
        payload = data.encode() if isinstance(data, str) else data
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            stream += client_frame(
                opcode if index == 0 else OP_CONT, piece, fin=last, mask=draw(masks)
            )
            if not last and draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                stream += client_frame(OP_PING, ping, mask=draw(masks))
                events.append(Message(OP_PING, ping))
        events.append(Message(opcode, data))
    return stream, events


@given(client_streams(), st.lists(st.integers(0, 2000), max_size=6))
@settings(max_examples=300, deadline=None)
def test_reader_any_chunking_gives_the_same_messages(
    sample: tuple[bytes, list[Message | Close]], cuts: list[int]
) -> None:
    stream, expected = sample
    points = sorted({min(cut, len(stream)) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert feed_all(Reader(), *chunks) == expected


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4), st.integers(0, 4))
def test_reader_unmasks_any_payload_at_any_mask_offset(
    payload: bytes, mask: bytes, split: int
) -> None:
    frame = client_frame(OP_BINARY, payload, mask=mask)
    header = len(frame) - len(payload)
    point = min(header + split, len(frame))
    assert feed_all(Reader(max_size=4000), frame[:point], frame[point:]) == [
        Message(OP_BINARY, payload)
    ]


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        pytest.param(client_frame(OP_TEXT, b"hi", mask=None), 1002, id="unmasked"),
        pytest.param(client_frame(OP_TEXT, b"hi", rsv=4), 1002, id="rsv1"),
        pytest.param(client_frame(OP_TEXT, b"hi", rsv=2), 1002, id="rsv2"),
        pytest.param(client_frame(OP_PING, b"", rsv=1), 1002, id="rsv3"),
        *(
            pytest.param(client_frame(op, b""), 1002, id=f"opcode-{op}")
            for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)
        ),
        pytest.param(client_frame(OP_PING, b"x" * 126), 1002, id="long-ping"),
        pytest.param(client_frame(OP_PONG, b"x" * 126), 1002, id="long-pong"),
        pytest.param(client_frame(OP_CLOSE, b"\x03\xe8" + b"x" * 124), 1002, id="long-close"),
        pytest.param(client_frame(OP_PING, b"x", fin=False), 1002, id="fragmented-ping"),
        pytest.param(client_frame(OP_CONT, b"x"), 1002, id="continuation-without-start"),
        pytest.param(
            client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"),
            1002,
            id="text-during-fragmented-message",
        ),
        pytest.param(
            client_frame(OP_BINARY, b"a", fin=False) + client_frame(OP_BINARY, b"b"),
            1002,
            id="binary-during-fragmented-message",
        ),
        pytest.param(client_frame(OP_TEXT, b"\xff"), 1007, id="invalid-utf8"),
        pytest.param(client_frame(OP_TEXT, b"\xed\xa0\x80"), 1007, id="utf8-surrogate"),
        pytest.param(client_frame(OP_TEXT, b"\xc0\xaf"), 1007, id="utf8-overlong"),
        pytest.param(client_frame(OP_TEXT, b"\xf4\x90\x80\x80"), 1007, id="utf8-above-max"),
        pytest.param(client_frame(OP_TEXT, "€".encode()[:2]), 1007, id="utf8-truncated"),
        pytest.param(
            client_frame(OP_TEXT, "€".encode()[:2], fin=False) + client_frame(OP_CONT, b""),
            1007,
            id="utf8-truncated-fragmented",
        ),
        pytest.param(client_frame(OP_CLOSE, b"\x03"), 1002, id="close-one-byte"),
        *(
            pytest.param(client_frame(OP_CLOSE, close_payload(code)), 1002, id=f"close-{code}")
            for code in (0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2000, 2999, 5000, 65535)
        ),
        pytest.param(
            client_frame(OP_CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd")),
            1007,
            id="close-reason-invalid-utf8",
        ),
        pytest.param(
            bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big") + MASK,
            1002,
            id="length-top-bit",
        ),
    ],
)
def test_reader_protocol_errors(stream: bytes, code: int) -> None:
    reader = Reader()
    with pytest.raises(WebSocketError) as caught:
        reader.feed(stream)
    assert caught.value.close_code == code
    assert caught.value.reason
    assert caught.value.events == []
    # Failed: nothing more is read, not even a well-formed frame.
    assert reader.feed(client_frame(OP_TEXT, b"more")) == []


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_reader_accepts_valid_close_codes(code: int) -> None:
    assert Reader().feed(client_frame(OP_CLOSE, close_payload(code, b"ok"))) == [Close(code, "ok")]


def test_reader_empty_close_has_no_code() -> None:
    assert Reader().feed(client_frame(OP_CLOSE, b"")) == [Close(None, "")]


def test_reader_reads_nothing_after_a_close() -> None:
    reader = Reader()
    stream = client_frame(OP_CLOSE, b"") + client_frame(OP_TEXT, b"late")
    assert reader.feed(stream) == [Close(None, "")]
    assert reader.feed(client_frame(OP_TEXT, b"later")) == []


def test_reader_error_carries_the_messages_before_it() -> None:
    reader = Reader()
    stream = client_frame(OP_TEXT, b"first") + client_frame(OP_PING, b"p") + bytes((0x83, 0x80))
    with pytest.raises(WebSocketError) as caught:
        reader.feed(stream)
    assert caught.value.events == [Message(OP_TEXT, "first"), Message(OP_PING, b"p")]


def test_reader_fails_fast_on_invalid_utf8_in_a_later_fragment() -> None:
    reader = Reader()
    assert reader.feed(client_frame(OP_TEXT, "κόσμε".encode(), fin=False)) == []
    with pytest.raises(WebSocketError) as caught:
        # Not the last fragment: the message is refused before it ends.
        reader.feed(client_frame(OP_CONT, b"\xed\xa0\x80", fin=False))
    assert caught.value.close_code == 1007


def test_reader_fails_fast_on_invalid_utf8_inside_a_frame() -> None:
    reader = Reader()
    frame = client_frame(OP_TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"x" * 100)
    assert reader.feed(frame[:12]) == []
    with pytest.raises(WebSocketError) as caught:
        # The invalid bytes arrived; the rest of the frame has not.
        reader.feed(frame[12:24])
    assert caught.value.close_code == 1007


def test_reader_refuses_a_too_big_message_from_its_header() -> None:
    reader = Reader(max_size=1000)
    assert reader.feed(client_frame(OP_BINARY, b"x" * 1000)) == [Message(OP_BINARY, b"x" * 1000)]
    header = client_frame(OP_BINARY, b"x" * 1001)[:4]  # 2 + 2 (length), no mask yet
    with pytest.raises(WebSocketError) as caught:
        reader.feed(header)
    assert caught.value.close_code == 1009


def test_reader_refuses_a_too_big_fragmented_message() -> None:
    reader = Reader(max_size=10)
    assert reader.feed(client_frame(OP_TEXT, b"x" * 6, fin=False)) == []
    with pytest.raises(WebSocketError) as caught:
        reader.feed(client_frame(OP_CONT, b"x" * 5)[:2])
    assert caught.value.close_code == 1009


def test_reader_size_limit_is_per_message() -> None:
    reader = Reader(max_size=10)
    stream = (
        client_frame(OP_TEXT, b"x" * 6, fin=False)
        + client_frame(OP_PING, b"y" * 20)  # control frames do not count
        + client_frame(OP_CONT, b"x" * 4)
        + client_frame(OP_TEXT, b"z" * 10)
    )
    assert reader.feed(stream) == [
        Message(OP_PING, b"y" * 20),
        Message(OP_TEXT, "x" * 10),
        Message(OP_TEXT, "z" * 10),
    ]


# --- the asyncio protocol, on a fake transport ------------------------------------------


class FakeTransport(asyncio.Transport):
    """Records writes; ``close`` and ``abort`` end the connection on the next loop turn,
    unless ``stuck`` (a peer that stopped reading: close never finishes flushing)."""

    def __init__(self, protocol: WebSocketProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.stuck = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed and not self.eof_written, "write after close or EOF"
        self.writes.append(bytes(data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        if not self.closed and not self.stuck:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.drains = 0
        self.closes = 0
        self.closed = asyncio.Event()

    def on_message(self, data: str | bytes) -> None:
        self.messages.append(data)

    def on_drain(self) -> None:
        self.drains += 1

    def on_closed(self) -> None:
        self.closes += 1
        self.closed.set()


def connect(
    handler: RecordingHandler | None = None, **kwargs: int
) -> tuple[WebSocketProtocol, FakeTransport, RecordingHandler]:
    handler = handler or RecordingHandler()
    protocol = WebSocketProtocol(**kwargs)
    protocol.handler = handler
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport, handler


async def test_protocol_delivers_messages_and_answers_pings() -> None:
    protocol, transport, handler = connect()
    assert protocol.open and protocol.writable and protocol.state is State.OPEN
    protocol.data_received(
        client_frame(OP_TEXT, "hé".encode())
        + client_frame(OP_PING, b"are you there")
        + client_frame(OP_PONG, b"unsolicited")
        + client_frame(OP_BINARY, b"\x00\x01")
    )
    assert handler.messages == ["hé", b"\x00\x01"]
    assert transport.writes == [encode_frame(OP_PONG, b"are you there")]


async def test_protocol_reads_bytes_that_came_with_the_upgrade() -> None:
    handler = RecordingHandler()
    protocol = WebSocketProtocol(handler)
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    protocol.data_received(client_frame(OP_TEXT, b"a") + client_frame(OP_TEXT, b"b")[:3])
    protocol.data_received(client_frame(OP_TEXT, b"b")[3:])
    assert handler.messages == ["a", "b"]


async def test_protocol_write_and_send_text() -> None:
    protocol, transport, _ = connect()
    protocol.write(text_frame("one") + text_frame("two"))
    protocol.send_text("three")
    assert transport.writes == [text_frame("one") + text_frame("two"), text_frame("three")]


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (close_payload(1001, b"going away"), close_frame(1001)),
        (close_payload(4000), close_frame(4000)),
        (b"", close_frame(None)),  # no code: answered without one, never with 1005
    ],
)
async def test_protocol_answers_the_peers_close_and_drops_tcp(
    payload: bytes, answer: bytes
) -> None:
    protocol, transport, handler = connect()
    protocol.data_received(client_frame(OP_CLOSE, payload) + client_frame(OP_TEXT, b"late"))
    assert transport.writes == [answer]
    assert transport.closed
    assert not protocol.open and not protocol.writable
    protocol.send_text("ignored")
    protocol.close()
    protocol.data_received(client_frame(OP_PING, b"after the close"))
    assert transport.writes == [answer]
    await handler.closed.wait()
    assert handler.closes == 1 and handler.messages == []
    assert protocol.transport is None and protocol.state is State.CLOSED


async def test_protocol_close_waits_for_the_peers_close_frame() -> None:
    protocol, transport, handler = connect()
    protocol.close(1001, "shutting down")
    protocol.close(1000)  # once only
    assert transport.writes == [close_frame(1001, "shutting down")]
    assert not protocol.open and not protocol.writable and not transport.closed
    # Until the client answers, messages are dropped and pings not answered.
    protocol.send_text("not sent")
    protocol.data_received(client_frame(OP_TEXT, b"late") + client_frame(OP_PING, b"p"))
    assert handler.messages == [] and len(transport.writes) == 1
    protocol.data_received(client_frame(OP_CLOSE, close_payload(1001)))
    assert transport.closed and not transport.aborted
    assert len(transport.writes) == 1  # the handshake is complete: no second close frame
    await handler.closed.wait()
    assert handler.closes == 1


async def test_protocol_aborts_when_the_peer_never_answers_the_close() -> None:
    protocol, transport, handler = connect()
    protocol.close_timeout = 0.01
    protocol.close()
    await asyncio.wait_for(handler.closed.wait(), 2)
    assert transport.aborted and handler.closes == 1


async def test_protocol_aborts_when_its_last_bytes_never_drain() -> None:
    protocol, transport, handler = connect()
    protocol.close_timeout = 0.01
    transport.stuck = True
    protocol.data_received(client_frame(OP_CLOSE, close_payload(1000)))
    assert transport.closed and not transport.aborted
    await asyncio.wait_for(handler.closed.wait(), 2)
    assert transport.aborted and handler.closes == 1


async def test_protocol_fails_the_connection_on_a_protocol_error() -> None:
    protocol, transport, handler = connect()
    protocol.close_timeout = 0.01
    protocol.data_received(
        client_frame(OP_TEXT, b"before") + client_frame(OP_TEXT, b"unmasked", mask=None)
    )
    assert handler.messages == ["before"]
    assert transport.writes == [close_frame(1002, "a client frame must be masked")]
    assert transport.eof_written and not protocol.open
    # Input is no longer read: not even the client's answering close frame.
    protocol.data_received(client_frame(OP_CLOSE, close_payload(1002)) + client_frame(OP_PING, b""))
    assert len(transport.writes) == 1
    assert not protocol.eof_received()  # the client's EOF lets the transport close
    await asyncio.wait_for(handler.closed.wait(), 2)
    assert handler.closes == 1


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (client_frame(OP_TEXT, b"\xff"), 1007),
        (client_frame(OP_BINARY, b"x" * 11), 1009),
        (client_frame(OP_CONT, b"x"), 1002),
    ],
)
async def test_protocol_sends_the_errors_close_code(stream: bytes, code: int) -> None:
    protocol, transport, handler = connect(max_size=10)
    protocol.data_received(stream)
    assert transport.writes[0][2:4] == code.to_bytes(2, "big")
    assert handler.messages == []


async def test_protocol_error_closes_a_transport_that_cannot_half_close() -> None:
    class TLSLikeTransport(FakeTransport):
        def can_write_eof(self) -> bool:
            return False

    handler = RecordingHandler()
    protocol = WebSocketProtocol(handler)
    transport = TLSLikeTransport(protocol)
    protocol.connection_made(transport)
    protocol.data_received(client_frame(OP_TEXT, b"\xff"))
    assert transport.writes == [close_frame(1007, "invalid UTF-8 in a text message")]
    assert transport.closed and not transport.eof_written
    await handler.closed.wait()


async def test_protocol_error_after_our_close_stops_reading() -> None:
    protocol, transport, _ = connect()
    protocol.close()
    protocol.data_received(bytes((0x83, 0x80)) + MASK)
    assert transport.eof_written
    assert transport.writes == [close_frame(1000)]


async def test_protocol_flow_control() -> None:
    protocol, transport, handler = connect()
    protocol.pause_writing()
    assert protocol.open and not protocol.writable
    protocol.send_text("still buffered by the transport")
    assert len(transport.writes) == 1
    protocol.resume_writing()
    assert protocol.writable and handler.drains == 1
    protocol.close()
    protocol.pause_writing()
    protocol.resume_writing()
    assert handler.drains == 1  # no drain once closing


async def test_protocol_handler_may_write_and_close_reentrantly() -> None:
    class Replier(RecordingHandler):
        protocol: WebSocketProtocol

        def on_message(self, data: str | bytes) -> None:
            super().on_message(data)
            self.protocol.send_text(f"echo {data!s}")
            if data == "bye":
                self.protocol.close(1000, "as asked")

    handler = Replier()
    protocol, transport, _ = connect(handler)
    handler.protocol = protocol
    protocol.data_received(
        client_frame(OP_TEXT, b"hi")
        + client_frame(OP_TEXT, b"bye")
        + client_frame(OP_TEXT, b"dropped")
        + client_frame(OP_PING, b"unanswered")
        + client_frame(OP_CLOSE, close_payload(1000))
    )
    assert handler.messages == ["hi", "bye"]
    assert transport.writes == [
        text_frame("echo hi"),
        text_frame("echo bye"),
        close_frame(1000, "as asked"),
    ]
    assert transport.closed
    await handler.closed.wait()


async def test_protocol_without_a_handler_yet_is_quiet() -> None:
    protocol = WebSocketProtocol()
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    protocol.data_received(client_frame(OP_TEXT, b"nobody listens"))
    protocol.pause_writing()
    protocol.resume_writing()
    protocol.connection_lost(None)
    assert protocol.state is State.CLOSED


async def test_protocol_reports_closed_once_when_the_connection_drops() -> None:
    protocol, transport, handler = connect()
    protocol.close_timeout = 0.01
    protocol.close()
    protocol.connection_lost(ConnectionResetError())
    protocol.connection_lost(None)
    assert handler.closes == 1
    assert not protocol.open and protocol.transport is None
    # The close timer was cancelled with the connection: nothing aborts later.
    await asyncio.sleep(0.03)
    assert not transport.aborted
