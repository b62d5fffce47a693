"""Every phase of every request is bounded (#17): a header block trickled on a keep-alive
connection, a body sent slowly, a huge header block; on both data planes. And an empty
Last-Event-ID is no position. Raw sockets, so that nothing in a client library helps."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.servers import RunningHub, running_hub
from tests.sse_support import next_event

LIMITS = {"request_header_timeout": 0.5, "request_body_timeout": 0.5}


async def _exchange(port: int, *parts: bytes) -> tuple[bytes, float]:
    """Send ``parts`` on one connection; the bytes the server sent until it closed, and
    how long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for part in parts:
            writer.write(part)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(-1)  # until the server closes
        return answer, loop.time() - started
    finally:
        writer.close()


HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(params=["native", "asgi"])
async def served(request: pytest.FixtureRequest) -> RunningHub:
    async with running_hub(data_plane=request.param, **LIMITS) as hub:
        yield hub  # type: ignore[misc]


async def test_a_second_request_whose_headers_never_end_gets_408(served: RunningHub) -> None:
    answer, took = await _exchange(served.port, HEALTH, b"GET /health HTTP/1.1\r\nHo")
    assert answer.count(b"HTTP/1.1 200") == 1
    assert b"HTTP/1.1 408" in answer and b"request_timeout" in answer
    assert took < 5


async def test_a_body_that_never_comes_gets_408(served: RunningHub) -> None:
    head = (
        b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    answer, took = await _exchange(served.port, head + b'{"channel": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < 5


@pytest.mark.parametrize("first", [True, False], ids=["first-request", "keep-alive"])
async def test_a_huge_header_block_gets_431_before_it_is_parsed(
    served: RunningHub, first: bool
) -> None:
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n"
    parts = (huge,) if first else (HEALTH, huge)
    answer, took = await _exchange(served.port, *parts)
    assert b"HTTP/1.1 431" in answer and b"headers_too_large" in answer
    assert took < 5
    async with httpx.AsyncClient() as http:  # and the hub is fine
        assert (await http.get(f"{served.url}/health")).status_code == 200


@pytest.mark.streams
async def test_an_empty_last_event_id_is_no_position() -> None:
    async with running_hub() as hub, httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        await http.post("/api/v1/publish", json={"channel": "c", "data": "old"})
        headers = {"Last-Event-ID": ""}
        async with aconnect_sse(http, "GET", "/api/v1/events?channel=c", headers=headers) as sse:
            events = sse.aiter_sse()
            live = await http.post("/api/v1/publish", json={"channel": "c", "data": "new"})
            first = await next_event(events)  # not a reset, not the old event
            assert first.event == "message"
            assert json.loads(first.data)["id"] == live.json()["id"]
