"""Acceptance 2 and 3 (resume): exactly the missed events, in order, then live ones;
a ``reset`` when history no longer reaches back. Over SSE (httpx-sse and raw bytes)
and over WebSocket (``since``)."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from tests.servers import RunningHub, running_hub
from tests.sse_support import next_event
from tidings.core.sse import SSEDecoder

pytestmark = pytest.mark.streams


async def _publish(http: httpx.AsyncClient, channel: str, n: int, tag: str = "") -> list[dict]:
    stored = []
    for i in range(n):
        response = await http.post(
            "/api/v1/publish",
            json={"channel": channel, "type": "tick", "data": {"n": i, "tag": tag}},
        )
        assert response.status_code == 201, response.text
        stored.append(response.json())
    return stored


_next = next_event


async def test_sse_two_channels_in_order_then_resume_exactly(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        url = "/api/v1/events?channel=net:a&channel=net:b"
        async with aconnect_sse(http, "GET", url) as source:
            events = source.aiter_sse()
            published = []
            for i in range(10):
                published += await _publish(http, "net:a" if i % 2 else "net:b", 1, tag=str(i))
            frames = [await _next(events) for _ in range(10)]
            assert [json.loads(frame.data) for frame in frames] == published
            # What a browser sends back as Last-Event-ID: the last frame's id.
            cursor = frames[-1].id
        missed = []
        for i in range(30):
            missed += await _publish(http, "net:a" if i % 3 else "net:b", 1, tag=f"m{i}")
        async with aconnect_sse(http, "GET", url, headers={"Last-Event-ID": cursor}) as source:
            events = source.aiter_sse()
            replay = [json.loads((await _next(events)).data) for _ in range(30)]
            # Exactly the 30; each channel's in publish order (SPEC §2 orders per channel;
            # a replay delivers one channel's missed events, then the next one's).
            for channel in ("net:a", "net:b"):
                assert [e for e in replay if e["channel"] == channel] == [
                    e for e in missed if e["channel"] == channel
                ]
            assert len(replay) == 30
            live = await _publish(http, "net:b", 1, tag="live")
            assert json.loads((await _next(events)).data) == live[0]


async def test_sse_resumes_even_before_the_first_event(served: RunningHub) -> None:
    """The position frame sent at connect gives a client a position to resume from."""
    url = "/api/v1/events?channel=quiet:a&channel=quiet:b"
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(f"GET {url} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await writer.drain()
        decoder = SSEDecoder()
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
            while not decoder.last_event_id:
                for message in decoder.feed(await _read_chunked(reader)):
                    assert message.event == "position", "no event was published yet"
        writer.close()
        missed = await _publish(http, "quiet:b", 3) + await _publish(http, "quiet:a", 2)
        headers = {"Last-Event-ID": decoder.last_event_id}
        async with aconnect_sse(http, "GET", url, headers=headers) as source:
            events = source.aiter_sse()
            replay = [json.loads((await _next(events)).data) for _ in range(5)]
            assert sorted(replay, key=lambda e: e["channel"]) == missed[3:] + missed[:3]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.strip(), 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def test_sse_resume_over_raw_socket_bytes(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        first = await _publish(http, "raw", 5)
        missed = await _publish(http, "raw", 30)
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        try:
            request = (
                "GET /api/v1/events?channel=raw HTTP/1.1\r\nHost: t\r\n"
                f"Last-Event-ID: {first[-1]['id']}\r\n\r\n"
            )
            sock.sendall(request.encode())
            buffer = b""
            loop = asyncio.get_running_loop()
            while buffer.count(b"\nevent: tick\n") < 30:
                chunk = await loop.run_in_executor(None, sock.recv, 65536)
                assert chunk, "stream closed early"
                buffer += chunk
            head, _, body = buffer.partition(b"\r\n\r\n")
            assert b"content-type: text/event-stream" in head.lower()
            assert b"x-accel-buffering: no" in head.lower()
            text = _dechunk(body)
            assert text.startswith(b"3\r\n") is False  # dechunked
            assert text.startswith(b"retry: 3000\n")
            frames = [f for f in text.split(b"\n\n") if b"event: tick" in f]
            assert len(frames) == 30
            for frame, event in zip(frames, missed, strict=True):
                lines = frame.split(b"\n")
                assert lines[0] == b"id: " + event["id"].encode()
                assert lines[1] == b"event: tick"
                assert json.loads(lines[2].removeprefix(b"data: ")) == event
        finally:
            sock.close()


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        if not rest:
            break
        size = int(size_text, 16)
        out += rest[:size]
        body = rest[size + 2 :]
        if size == 0:
            break
    return out


async def test_sse_resume_beyond_history_gets_reset_then_live() -> None:
    async with running_hub(history_size=100) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            first = await _publish(http, "big", 1)
            await _publish(http, "big", 150)
            headers = {"Last-Event-ID": first[0]["id"]}
            async with aconnect_sse(
                http, "GET", "/api/v1/events?channel=big", headers=headers
            ) as source:
                events = source.aiter_sse()
                reset = await _next(events)
                assert reset.event == "reset"
                assert json.loads(reset.data)["channel"] == "big"
                assert json.loads(reset.data)["reason"] == "history_gap"
                live = await _publish(http, "big", 1, tag="live")
                after = await _next(events)
                assert after.event == "tick"
                assert json.loads(after.data) == live[0]  # nothing of the old history replayed


async def test_sse_plain_mode_has_no_event_lines(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        async with aconnect_sse(http, "GET", "/api/v1/events?channel=p&plain=1") as source:
            events = source.aiter_sse()
            stored = await _publish(http, "p", 1)
            event = await _next(events)
            assert event.event == "message"
            assert json.loads(event.data) == stored[0]


async def test_sse_type_filter(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        async with aconnect_sse(http, "GET", "/api/v1/channels/f/events/stream?type=b") as source:
            events = source.aiter_sse()
            for kind in ("a", "b", "a", "b"):
                await http.post(
                    "/api/v1/publish", json={"channel": "f", "type": kind, "data": kind}
                )
            assert (await _next(events)).event == "b"
            assert (await _next(events)).event == "b"


async def test_sse_channel_in_path_with_slashes(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        for path in ("tenant:acme/alerts", "tenant:acme%2Falerts"):
            async with aconnect_sse(
                http, "GET", f"/api/v1/channels/{path}/events/stream"
            ) as source:
                events = source.aiter_sse()
                stored = await _publish(http, "tenant:acme/alerts", 1)
                assert json.loads((await _next(events)).data) == stored[0]


async def _ws_recv(ws: websockets.ClientConnection, kind: str) -> dict:
    async with asyncio.timeout(5):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


@pytest.mark.parametrize("missed_count", [30])
async def test_websocket_resume_with_since(served: RunningHub, missed_count: int) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        async with websockets.connect(served.ws_url + "/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": "w", "id": 1}))
            subscribed = await _ws_recv(ws, "subscribed")
            assert subscribed["id"] == 1
            assert subscribed["recovered"] is False
            seen = await _publish(http, "w", 5)
            got = [(await _ws_recv(ws, "event"))["data"] for _ in range(5)]
            assert got == seen
        missed = await _publish(http, "w", missed_count)
        async with websockets.connect(served.ws_url + "/ws") as ws:
            await ws.send(
                json.dumps(
                    {"type": "subscribe", "channel": "w", "since": seen[-1]["id"], "id": "r"}
                )
            )
            subscribed = await _ws_recv(ws, "subscribed")
            assert subscribed["recovered"] is True
            replay = [(await _ws_recv(ws, "event"))["data"] for _ in range(missed_count)]
            assert replay == missed
            live = await _publish(http, "w", 1)
            assert (await _ws_recv(ws, "event"))["data"] == live[0]


async def test_websocket_since_outside_history_resets() -> None:
    async with running_hub(history_size=100) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            first = await _publish(http, "w", 1)
            await _publish(http, "w", 150)
            async with websockets.connect(served.ws_url + "/ws") as ws:
                for since in (first[0]["id"], "unknown-7", "zz"):
                    await ws.send(json.dumps({"type": "subscribe", "channel": "w", "since": since}))
                    subscribed = await _ws_recv(ws, "subscribed")
                    assert subscribed["recovered"] is False
                    reset = await _ws_recv(ws, "reset")
                    assert reset["channel"] == "w"
                    assert reset["reason"] == "history_gap"
                live = await _publish(http, "w", 1)
                assert (await _ws_recv(ws, "event"))["data"] == live[0]


async def test_resume_seam_under_concurrent_publishing(served: RunningHub) -> None:
    """Events published while a subscription recovers are neither lost nor doubled."""
    hub = served.hub
    first = await hub.publish("seam", "tick", 0)
    async with websockets.connect(served.ws_url + "/ws") as ws:

        async def keep_publishing() -> list[str]:
            ids = []
            for n in range(1, 81):  # within history_size, so recovery is complete
                ids.append((await hub.publish("seam", "tick", n)).id)
                await asyncio.sleep(0)
            return ids

        publisher = asyncio.create_task(keep_publishing())
        await ws.send(json.dumps({"type": "subscribe", "channel": "seam", "since": first.id}))
        await _ws_recv(ws, "subscribed")
        ids = await publisher
        received = []
        async with asyncio.timeout(10):
            while len(received) < len(ids):
                message = json.loads(await ws.recv())
                assert message["type"] != "reset"
                if message["type"] == "event":
                    received.append(message["data"]["id"])
        assert received == ids
