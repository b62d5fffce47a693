"""The native data plane of ``tidings serve``: what only its front protocol decides.

Routing (streams here, the rest to uvicorn on the same connection), bytes that come
with the upgrade request, handshakes that are not WebSocket ones, SSE response headers
(CORS, request id), proxy addresses, and the ASGI fallback for HTTP/1.0.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import httpx
import pytest
import websockets

from tests.servers import RunningHub, running_hub

pytestmark = pytest.mark.skipif(
    os.environ.get("TIDINGS_DATA_PLANE") == "asgi", reason="native data plane only"
)

KEY = base64.b64encode(b"0123456789abcdef").decode()


def _upgrade(path: str, *headers: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


class RawClient:
    """A socket that reads server frames (unmasked, short or 16-bit lengths)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def head(self) -> bytes:
        async with asyncio.timeout(5):
            return await self.reader.readuntil(b"\r\n\r\n")

    async def message(self) -> dict[str, Any]:
        async with asyncio.timeout(5):
            first, second = await self.reader.readexactly(2)
            assert first == 0x81, first
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            return dict(json.loads(await self.reader.readexactly(length)))

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self.message()
            if message["type"] == kind:
                return message

    def close(self) -> None:
        self.writer.close()


async def test_bytes_sent_with_the_upgrade_request_are_not_lost(served: RunningHub) -> None:
    # A client may send its first frames right behind the handshake, in one packet.
    client = await RawClient.open(served.port)
    try:
        subscribe = json.dumps({"type": "subscribe", "channel": "early", "id": 1})
        client.writer.write(_upgrade("/ws") + _masked_text(subscribe))
        assert (await client.head()).startswith(b"HTTP/1.1 101 ")
        assert (await client.until("connected"))["type"] == "connected"
        subscribed = await client.until("subscribed")
        assert subscribed["channel"] == "early" and subscribed["id"] == 1
        event = await served.hub.publish("early", "t", {"n": 1})
        assert (await client.until("event"))["data"]["id"] == event.id
    finally:
        client.close()


async def test_a_request_head_in_single_bytes_is_still_upgraded(served: RunningHub) -> None:
    client = await RawClient.open(served.port)
    try:
        for byte in _upgrade("/ws?channel=slow"):
            client.writer.write(bytes([byte]))
            await client.writer.drain()
        assert (await client.head()).startswith(b"HTTP/1.1 101 ")
        assert (await client.until("subscribed"))["channel"] == "slow"
    finally:
        client.close()


@pytest.mark.parametrize(
    ("headers", "missing"),
    [
        (("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"), "key"),
        (
            ("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}"),
            "version",
        ),
        (
            (
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: short",
                "Sec-WebSocket-Version: 13",
            ),
            "bad key",
        ),
    ],
)
async def test_a_broken_handshake_gets_400_and_json(
    served: RunningHub, headers: tuple[str, ...], missing: str
) -> None:
    client = await RawClient.open(served.port)
    try:
        request = "\r\n".join(["GET /ws HTTP/1.1", "Host: x", *headers]) + "\r\n\r\n"
        client.writer.write(request.encode())
        head = await client.head()
        assert head.startswith(b"HTTP/1.1 400 "), (missing, head)
        assert b"application/json" in head
        async with asyncio.timeout(5):
            body = await client.reader.read()
        assert json.loads(body)["error"]["code"] == "bad_request"
        assert not served.hub.connections
    finally:
        client.close()


async def test_other_requests_share_a_keep_alive_connection_with_uvicorn(
    served: RunningHub,
) -> None:
    # One connection: the first request is handed to uvicorn with every byte read,
    # including a second, pipelined request.
    client = await RawClient.open(served.port)
    try:
        client.writer.write(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        for _ in range(2):
            head = await client.head()
            assert head.startswith(b"HTTP/1.1 200 ")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await client.reader.readexactly(length)
    finally:
        client.close()


async def test_garbage_is_answered_by_uvicorn_and_the_hub_goes_on(served: RunningHub) -> None:
    client = await RawClient.open(served.port)
    try:
        client.writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await client.reader.read()
        assert answer.startswith(b"HTTP/1.1 400 ")
    finally:
        client.close()
    async with websockets.connect(served.ws_url + "/ws") as ws:
        assert json.loads(await ws.recv())["type"] == "connected"


async def test_sse_errors_are_json_with_a_request_id(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=5) as http:
        response = await http.get("/api/v1/events", headers={"X-Request-ID": "rid-1"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "missing_channel"
        assert response.headers["x-request-id"] == "rid-1"
        bad = await http.get("/api/v1/channels/has%20space/events/stream")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_channel"


async def test_sse_on_an_allowed_origin_gets_cors_headers() -> None:
    async with running_hub(allowed_origins=("https://app.example",)) as served:
        async with (
            httpx.AsyncClient(base_url=served.url, timeout=5) as http,
            http.stream(
                "GET",
                "/api/v1/channels/c/events/stream",
                headers={"Origin": "https://app.example"},
            ) as response,
        ):
            assert response.status_code == 200
            headers = response.headers
            assert headers["access-control-allow-origin"] == "https://app.example"
            assert headers["access-control-allow-credentials"] == "true"
            assert "X-Request-ID" in headers["access-control-expose-headers"]
            assert len(headers["x-request-id"]) == 16
            assert headers["content-type"].startswith("text/event-stream")
        async with httpx.AsyncClient(base_url=served.url, timeout=5) as http:
            refused = await http.get(
                "/api/v1/events?channel=c", headers={"Origin": "https://evil.example"}
            )
            assert refused.status_code == 403
            assert "access-control-allow-origin" not in refused.headers


async def test_a_trusted_proxy_s_client_address_is_the_connection_s(served: RunningHub) -> None:
    headers = {"X-Forwarded-For": "203.0.113.7"}
    async with websockets.connect(served.ws_url + "/ws", additional_headers=headers) as ws:
        first = json.loads(await ws.recv())
        remote = served.hub.connections[first["connection_id"]].remote
        assert remote is not None and remote.startswith("203.0.113.7:")


async def test_http_1_0_streams_are_left_to_the_asgi_app(served: RunningHub) -> None:
    # Chunked coding needs HTTP/1.1: an HTTP/1.0 stream is served by the ASGI endpoint.
    client = await RawClient.open(served.port)
    try:
        client.writer.write(b"GET /api/v1/events?channel=old HTTP/1.0\r\nHost: x\r\n\r\n")
        head = await client.head()
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"text/event-stream" in head
        async with asyncio.timeout(5):
            assert b"retry:" in await client.reader.readuntil(b"\n\n")
    finally:
        client.close()


async def test_a_stream_closed_while_it_subscribes_leaves_nothing_behind(
    served: RunningHub,
) -> None:
    # The client goes away before its subscriptions settle: no connection, no
    # subscriber and no task may remain.
    ended = 0
    all_ended = asyncio.Event()

    def count(connection: object) -> None:
        nonlocal ended
        ended += 1
        if ended == 20:
            all_ended.set()

    served.hub.on_disconnect(count)
    for _ in range(20):
        client = await RawClient.open(served.port)
        client.writer.write(_upgrade("/ws?channel=a&channel=b&channel=c"))
        await client.head()
        client.writer.transport.abort()
    await asyncio.wait_for(all_ended.wait(), 5)
    assert not served.hub.connections
    assert served.hub.subscriptions_count() == 0
