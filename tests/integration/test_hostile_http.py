"""Hostile HTTP (#17): what an attacker sends to the front of ``tidings serve``, on both
data planes, and what it must get: a 4xx or a close, in bounded time, and nothing
executed that was smuggled in. Raw sockets, so that no client library tidies the bytes.

(tests/integration/test_request_limits.py has the keep-alive header timeout, the body
timeout and a huge header value; tests/integration/test_half_open.py the 10,000
half-open connections.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from tests.servers import RunningHub, running_hub
from tests.ws_frames import OP_TEXT, RawWebSocket, frame, upgrade_request
from tidings.auth.tokens import mint_token
from tidings.identity import Identity

HEADER_TIMEOUT = 0.5
SECRET = "hostile-http-secret-long-enough-for-hs256"


@pytest.fixture(params=["native", "asgi"])
async def served(request: pytest.FixtureRequest) -> RunningHub:
    limits = {"request_header_timeout": HEADER_TIMEOUT, "request_body_timeout": HEADER_TIMEOUT}
    async with running_hub(data_plane=request.param, connection_rate=0, **limits) as hub:
        yield hub  # type: ignore[misc]


async def _exchange(port: int, data: bytes) -> tuple[bytes, float]:
    """Send ``data`` on a new connection; what the server sent until it closed, and how
    long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(-1)  # until the server closes
        return answer, loop.time() - started
    finally:
        writer.close()


async def _assert_healthy(hub: RunningHub) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{hub.url}/health")).status_code == 200


def _json_error(answer: bytes, status: int, code: str) -> None:
    """``answer`` is exactly one response: ``status`` with a JSON error ``code``."""
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"]["code"] == code


# -- slowloris ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 200,
        b"GET /api/v1/events?channel=" + b"c" * 500,
    ],
    ids=["headers", "request-line"],
)
async def test_a_first_request_trickled_byte_by_byte_gets_408_at_the_header_timeout(
    served: RunningHub, request_bytes: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:
        for byte in request_bytes:  # never finishes within the timeout: 20 bytes a second
            writer.write(bytes((byte,)))
            await asyncio.sleep(0.05)  # the attack is the pace; nothing to await instead

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
        took = loop.time() - started
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
    _json_error(answer, 408, "request_timeout")
    assert HEADER_TIMEOUT <= took < HEADER_TIMEOUT + 1.5, took
    await _assert_healthy(served)


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    served: RunningHub,
) -> None:
    answer, took = await _exchange(served.port, b"")
    assert answer == b""
    assert HEADER_TIMEOUT <= took < HEADER_TIMEOUT + 1.5, took


# -- too many headers --------------------------------------------------------------------


async def test_many_small_headers_over_the_block_cap_get_431(served: RunningHub) -> None:
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 5000 + b"\r\n"
    answer, took = await _exchange(served.port, many)
    _json_error(answer, 431, "headers_too_large")
    assert took < 5
    await _assert_healthy(served)


async def test_many_small_headers_under_the_cap_are_served(served: RunningHub) -> None:
    many = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"a: b\r\n" * 2000
    answer, _ = await _exchange(served.port, many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


# -- request smuggling -------------------------------------------------------------------

SMUGGLED = json.dumps({"channel": "smuggled", "data": "never"}).encode()
SMUGGLED_REQUEST = (
    b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(SMUGGLED), SMUGGLED)
)
# The chunked body ends at once; a server that believed Content-Length instead would
# read the smuggled request as body, and one that believed the chunks would run it.
CHUNKED_END = b"0\r\n\r\n"
FRAMINGS = {
    "cl-then-te": [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
    "te-then-cl": [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
    "te-list-then-cl": [b"Transfer-Encoding: gzip, chunked", b"Content-Length: 5"],
    "duplicate-cl": [b"Content-Length: 5", b"Content-Length: 5"],
    "conflicting-cl": [b"Content-Length: 5", b"Content-Length: 120"],
    "cl-list": [b"Content-Length: 5, 120"],
}


@pytest.mark.parametrize("keep_alive", [False, True], ids=["first-request", "keep-alive"])
@pytest.mark.parametrize("framing", list(FRAMINGS))
async def test_ambiguous_body_framing_gets_400_and_nothing_smuggled_runs(
    served: RunningHub, framing: str, keep_alive: bool
) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" if keep_alive else b""
    headers = b"\r\n".join(FRAMINGS[framing])
    attack = (
        b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + headers
        + b"\r\n\r\n"
        + CHUNKED_END
        + SMUGGLED_REQUEST
    )
    answer, _ = await _exchange(served.port, first + attack)
    if keep_alive:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        answer = answer[answer.index(b"HTTP/1.1 ", 1) :]
    _json_error(answer, 400, "bad_request")
    async with httpx.AsyncClient(base_url=served.url) as http:
        history = await http.get("/api/v1/channels/smuggled/history")
    assert history.status_code == 200
    assert history.json()["events"] == []


# -- after an upgrade --------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 64, b"\x81\x05hello"],
    ids=["http-request", "zeros", "unmasked-frame"],
)
async def test_garbage_pipelined_after_an_upgrade_gets_a_protocol_close(
    served: RunningHub, garbage: bytes
) -> None:
    ws = await RawWebSocket.connect(served.port, then=garbage)
    try:
        async with asyncio.timeout(5):
            closed = await ws.closed()
        assert closed.code == 1002, closed
    finally:
        await ws.aclose()
    await _assert_healthy(served)


async def test_a_frame_pipelined_after_an_upgrade_is_read(served: RunningHub) -> None:
    ping = frame(OP_TEXT, b'{"type":"ping","id":"early"}')
    ws = await RawWebSocket.connect(served.port, then=ping)
    try:
        async with asyncio.timeout(5):
            assert (await ws.read_message())["type"] == "connected"
            answer = await ws.read_message()
        assert answer["type"] == "pong" and answer["id"] == "early", answer
    finally:
        await ws.aclose()


@pytest.mark.parametrize("data_plane", ["native", "asgi"])
async def test_bytes_sent_while_an_upgrade_is_admitted_wait_for_the_handshake(
    data_plane: str,
) -> None:
    """Frames (here garbage) sent in their own packet after the upgrade request, before
    the answer: the hub admits the connection first (a connect hook holds it here), then
    reads them, and answers the garbage with 1002."""
    admitted = asyncio.Event()
    asked = asyncio.Event()

    async def hook(identity: Identity, request: Mapping[str, Any]) -> Any:
        asked.set()
        await admitted.wait()
        return {"channels": ["c"]}

    async with running_hub(data_plane=data_plane, jwt_secret=SECRET, connection_rate=0) as hub:
        hub.hub.set_connect_hook(hook)
        token = mint_token(SECRET, sub="early", channels=["**"])
        ws = await RawWebSocket.open(hub.port, upgrade_request(f"/ws?token={token}"))
        try:
            async with asyncio.timeout(5):
                await asked.wait()
                await ws.send(b"\x00" * 16)
                admitted.set()
                await ws.read_upgrade()
                closed = await ws.closed()
            assert closed.code == 1002, closed
        finally:
            await ws.aclose()
        await _assert_healthy(hub)
