"""WebSocket fuzzing against a live hub (#17), on both stream paths.

hypothesis draws client input, a raw client (tests/ws_frames.py) sends it after a real
upgrade, and each example is checked for the answer docs/protocol.md promises:

* a message, mutated from the protocol's own or random JSON, text or bytes, gets
  replies of documented types only, errors with documented codes only, and the
  connection stays open (a ``ping`` sent after it is answered);
* a broken frame gets its RFC 6455 close code: 1007 for invalid UTF-8, 1002 for a
  fragmented or oversize control frame, a new message inside a fragmented one, a
  continuation of nothing, reserved bits or opcodes, an unmasked frame; 1009 for a
  message over ``max_message_size``;
* a close frame between the fragments of a message is answered with a close, and a TCP
  connection dropped mid-frame is released;
* random bytes after the handshake get documented answers only, and the connection
  ends when the client stops sending.

After every example the hub answers ``/health`` and a witness connection, open since
before the first example, receives a published event. The codes and message types
allowed are read from docs/protocol.md, so the document and the hub must agree.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from tests.servers import RunningHub, running_hub
from tests.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    close_payload,
    frame,
)

pytestmark = [pytest.mark.streams, pytest.mark.timeout(120)]

#: The witness's channel: no strategy below draws a name this long with a dash.
WITNESS = "fuzz-witness"
MAX_MESSAGE = 4096
FUZZ = settings(
    max_examples=40,
    deadline=None,  # a live server: a slow moment is not a failure
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _documented(section: str, stop: str) -> set[str]:
    """The backticked names in the first column of the tables of a docs/protocol.md
    section."""
    text = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    body = text.split(section, 1)[1].split(stop, 1)[0]
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


ERROR_CODES = _documented("## Error codes", "## Slow consumers")
SERVER_TYPES = _documented("### Server → client", "### Client → server")


@dataclass
class Fuzzed:
    running: RunningHub
    http: httpx.AsyncClient
    witness: ClientConnection

    async def connect(self, *, then: bytes = b"") -> RawWebSocket:
        """A raw connection past its ``connected`` message."""
        ws = await RawWebSocket.connect(self.running.port, then=then)
        if not then:
            assert (await ws.read_message())["type"] == "connected"
        return ws

    async def assert_healthy(self) -> None:
        """The hub answers, and the witness still gets what is published to it."""
        assert (await self.http.get("/health")).status_code == 200
        sent = await self.http.post("/api/v1/publish", json={"channel": WITNESS, "data": 1})
        assert sent.status_code == 201, sent.text
        async with asyncio.timeout(5):
            got = json.loads(await self.witness.recv())
        assert got == {"type": "event", "data": sent.json()}

    async def assert_released(self) -> None:
        """Every connection but the witness is gone from the hub (bounded wait: the hub
        releases a connection when its socket closes, which has no event to await)."""
        async with asyncio.timeout(5):
            while len(self.running.hub.connections) > 1:
                await asyncio.sleep(0.01)


@pytest.fixture
async def fuzzed() -> AsyncIterator[Fuzzed]:
    async with (
        running_hub(connection_rate=0, max_message_size=MAX_MESSAGE) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
        websockets.connect(f"{running.ws_url}/ws?channel={WITNESS}", open_timeout=5) as witness,
    ):
        async with asyncio.timeout(5):
            assert json.loads(await witness.recv())["type"] == "connected"
            assert json.loads(await witness.recv())["type"] == "subscribed"
        fuzzed = Fuzzed(running, http, witness)
        yield fuzzed
        await fuzzed.assert_released()
        await fuzzed.assert_healthy()


# -- strategies ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
channels = st.sampled_from(
    ["fuzz", "fuzz/a:b", "bad channel!", "", "x" * 201, "tenant:t/c", "client:bob", "a;b"]
) | st.text(max_size=10)
request_ids = st.none() | st.integers() | st.text(max_size=12) | st.just("i" * 101) | json_values

_optional_id = {"id": request_ids}
protocol_messages = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("subscribe"), "channel": channels},
        optional={"since": st.none() | st.text(max_size=12) | json_values, "types": json_values}
        | _optional_id,
    ),
    st.fixed_dictionaries(
        {"type": st.just("unsubscribe"), "channel": channels}, optional=_optional_id
    ),
    st.fixed_dictionaries(
        {"type": st.just("publish"), "channel": channels, "data": json_values},
        optional={
            "event": st.sampled_from(["message", "bad type", ""]) | json_values,
            "delay_s": st.floats(-1, 5, allow_nan=False) | json_values,
            "at": st.sampled_from(["2999-01-01T00:00:00Z", "yesterday"]) | json_values,
            "key": st.text(max_size=8) | json_values,
        }
        | _optional_id,
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["ping", "pong"])}, optional=_optional_id),
    st.fixed_dictionaries(
        {"type": st.just("refresh"), "token": json_values}, optional=_optional_id
    ),
    st.fixed_dictionaries(
        {"type": st.just("command"), "name": st.text(max_size=10) | json_values},
        optional={"args": json_values} | _optional_id,
    ),
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> Any:
    """A protocol message with a few fields removed, replaced or added, or a value that
    is not an object at all."""
    message: dict[str, Any] = draw(protocol_messages)
    for _ in range(draw(st.integers(0, 3))):
        keys = sorted(message)
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop" and keys:
            del message[draw(st.sampled_from(keys))]
        elif action == "replace" and keys:
            message[draw(st.sampled_from(keys))] = draw(json_values)
        else:
            message[draw(st.sampled_from(["type", "channel", "data", "id", "x"]))] = draw(
                json_values
            )
    shape = draw(st.sampled_from(["object", "in a list", "replaced"]))
    if shape == "object":
        return message
    return [message] if shape == "in a list" else draw(json_values)


# Frames of messages that must be answered (with replies or errors), not closed on.
answered_frames = st.one_of(
    mutated_messages().map(lambda m: frame(OP_TEXT, json.dumps(m).encode())),
    json_values.map(lambda v: frame(OP_TEXT, json.dumps(v).encode())),
    st.text(max_size=64).map(lambda t: frame(OP_TEXT, t.encode())),
    st.binary(max_size=64).map(lambda b: frame(OP_BINARY, b)),
    mutated_messages().map(lambda m: frame(OP_BINARY, json.dumps(m).encode())),
)

INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # a character cut short
    b"\x80",  # a continuation byte on its own
]


def _split(payload: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(payload)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(payload[start:point])
        start = point
    return [*pieces, payload[start:]]


def fragmented(opcode: int, pieces: list[bytes]) -> bytes:
    """One message sent as ``pieces``: the first with ``opcode``, the rest continuations."""
    last = len(pieces) - 1
    return b"".join(
        frame(opcode if i == 0 else OP_CONT, piece, fin=i == last) for i, piece in enumerate(pieces)
    )


@st.composite
def invalid_utf8_text(draw: st.DrawFn) -> bytes:
    """A text message with an invalid UTF-8 sequence, whole or in fragments."""
    before = draw(st.text(max_size=20)).encode()
    after = draw(st.text(max_size=20)).encode()
    payload = before + draw(st.sampled_from(INVALID_UTF8)) + after
    cuts = draw(st.lists(st.integers(0, len(payload)), max_size=3))
    return fragmented(OP_TEXT, _split(payload, cuts))


@st.composite
def protocol_errors(draw: st.DrawFn) -> bytes:
    """Frames that break RFC 6455 framing (close code 1002), after an optional valid
    message."""
    opened = frame(draw(st.sampled_from([OP_TEXT, OP_BINARY])), b'{"type":', fin=False)
    control = draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE]))
    small = draw(st.binary(max_size=20))
    broken = draw(
        st.sampled_from(
            [
                # a fragmented control frame, alone or inside a fragmented message
                frame(control, small, fin=False),
                opened + frame(control, small, fin=False),
                # a control frame over 125 bytes
                frame(OP_PING, b"p" * draw(st.integers(126, 300))),
                # a new data frame while a fragmented message is open
                opened
                + frame(
                    draw(st.sampled_from([OP_TEXT, OP_BINARY])), small, fin=draw(st.booleans())
                ),
                # a continuation of no message
                frame(OP_CONT, small, fin=draw(st.booleans())),
                # reserved bits, reserved opcodes, no mask
                frame(OP_TEXT, b"{}", rsv=draw(st.integers(1, 7))),
                frame(draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])), small),
                frame(OP_TEXT, b'{"type":"ping"}', mask=None),
            ]
        )
    )
    prefix = frame(OP_TEXT, b'{"type":"pong"}') if draw(st.booleans()) else b""
    return prefix + broken


@st.composite
def oversize_messages(draw: st.DrawFn) -> bytes:
    """A message over the limit: announced by one frame header (its payload never sent),
    or reached by fragments."""
    if draw(st.booleans()):
        size = draw(st.integers(MAX_MESSAGE + 1, 1 << 40))
        return frame(draw(st.sampled_from([OP_TEXT, OP_BINARY])), b"", length=size)
    pieces = draw(
        st.lists(st.integers(1, MAX_MESSAGE), min_size=2, max_size=6).filter(
            lambda s: sum(s) > MAX_MESSAGE
        )
    )
    return fragmented(OP_BINARY, [b"x" * size for size in pieces])


# -- messages ----------------------------------------------------------------------------


async def _answered_then_pong(ws: RawWebSocket, probe: str) -> list[dict[str, Any]]:
    """Every message up to the ``pong`` answering ``probe``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while True:
            message = await ws.read_message()
            if message.get("type") == "pong" and message.get("id") == probe:
                return seen
            seen.append(message)


@FUZZ
@given(frames=st.lists(answered_frames, min_size=1, max_size=5))
async def test_any_message_is_answered_as_documented_and_the_connection_stays(
    fuzzed: Fuzzed, frames: list[bytes]
) -> None:
    ws = await fuzzed.connect()
    try:
        await ws.send(*frames, frame(OP_TEXT, b'{"type":"ping","id":"probe"}'))
        for message in await _answered_then_pong(ws, "probe"):
            assert message["type"] in SERVER_TYPES, message
            assert message["type"] != "disconnect", message
            if message["type"] == "error":
                assert message["code"] in ERROR_CODES, message
                assert isinstance(message["message"], str) and message["message"]
    finally:
        await ws.aclose()
    await fuzzed.assert_healthy()


# -- frames --------------------------------------------------------------------------------


async def _closed_with(fuzzed: Fuzzed, frames: bytes, code: int) -> None:
    ws = await fuzzed.connect()
    try:
        await ws.send(frames)
        async with asyncio.timeout(5):
            closed = await ws.closed()
            await ws.ended()
        assert closed.code == code, closed
        assert all(m["type"] in SERVER_TYPES for m in closed.messages)
    finally:
        await ws.aclose()
    await fuzzed.assert_healthy()


@FUZZ
@given(frames=invalid_utf8_text())
async def test_invalid_utf8_in_a_text_message_closes_with_1007(
    fuzzed: Fuzzed, frames: bytes
) -> None:
    await _closed_with(fuzzed, frames, 1007)


@FUZZ
@given(reason=st.sampled_from(INVALID_UTF8))
async def test_invalid_utf8_in_a_close_reason_closes_with_1007(
    fuzzed: Fuzzed, reason: bytes
) -> None:
    await _closed_with(fuzzed, frame(OP_CLOSE, close_payload(1000) + reason), 1007)


@FUZZ
@given(frames=protocol_errors())
async def test_broken_framing_closes_with_1002(fuzzed: Fuzzed, frames: bytes) -> None:
    await _closed_with(fuzzed, frames, 1002)


@FUZZ
@given(frames=oversize_messages())
async def test_a_message_over_the_limit_closes_with_1009(fuzzed: Fuzzed, frames: bytes) -> None:
    await _closed_with(fuzzed, frames, 1009)


@FUZZ
@given(
    code=st.sampled_from([1000, 1001, 1003, 1008, 1011]) | st.integers(3000, 4999),
    pieces=st.integers(1, 3),
)
async def test_a_close_between_fragments_is_answered_with_a_close(
    fuzzed: Fuzzed, stream_path: str, code: int, pieces: int
) -> None:
    opened = b"".join(
        frame(OP_TEXT if i == 0 else OP_CONT, b"ab", fin=False) for i in range(pieces)
    )
    # RFC 6455 lets a control frame come between fragments: the native path echoes the
    # code (§7.4.1 "typically"); uvicorn's WebSocket server (the ASGI path) refuses the
    # unfinished message with 1002. Either way a close, and the connection ends.
    await _closed_with(
        fuzzed,
        opened + frame(OP_CLOSE, close_payload(code)),
        code if stream_path == "native" else 1002,
    )


@FUZZ
@given(
    head=st.binary(max_size=40),
    cut=st.integers(0, 13),
)
async def test_a_connection_dropped_mid_frame_is_released(
    fuzzed: Fuzzed, head: bytes, cut: int
) -> None:
    ws = await fuzzed.connect()
    # A fragment opens a message, then a frame stops inside its header or payload.
    partial = frame(OP_BINARY, head + b"x" * 64)[: cut + len(head)]
    await ws.send(frame(OP_TEXT, b'{"type":', fin=False), partial)
    ws.abort()
    await fuzzed.assert_released()
    await fuzzed.assert_healthy()


@FUZZ
@given(noise=st.binary(min_size=1, max_size=300))
async def test_random_bytes_after_the_handshake_never_break_the_hub(
    fuzzed: Fuzzed, noise: bytes
) -> None:
    """Bytes that may or may not make frames: whatever the hub answers is documented
    (messages, a close code a server may send), and once the client stops sending the
    connection ends and is released."""
    ws = await fuzzed.connect()
    try:
        await ws.send(noise)
        ws.writer.write_eof()
        async with asyncio.timeout(5):
            closed = await ws.closed()
            await ws.ended()
    finally:
        await ws.aclose()
    assert closed.code is None or 1000 <= closed.code <= 4999, closed
    for message in closed.messages:
        assert message["type"] in SERVER_TYPES, message
        if message["type"] == "error":
            assert message["code"] in ERROR_CODES, message
    await fuzzed.assert_released()
    await fuzzed.assert_healthy()
