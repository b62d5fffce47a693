"""The subscriber side of the load generator: many cheap subscribers in one event loop.

Each subscriber only finds the send stamp (``"t":<time_ns>``) in the raw bytes it
receives, without decoding the message, so one core can keep up with thousands of
them. WebSocket subscribers use the ``websockets`` asyncio client (no compression, no
library pings); SSE subscribers read raw bytes from an asyncio stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tidings.bench.sse import ChunkedDecoder, FrameSplitter, parse_head
from tidings.bench.targets import Target

__all__ = ["Tally", "find_stamp", "number_after", "subscribe"]

_STAMP = b'"t":'


def find_stamp(message: bytes) -> int | None:
    """The ``"t"`` send stamp in an event message, or ``None`` when it carries none."""
    return number_after(message, _STAMP)


def number_after(message: bytes, key: bytes) -> int | None:
    """The non-negative integer right after the last ``key`` in ``message``, if any.

    Events are found in the raw bytes, without decoding them: thousands of subscribers
    share one core, and the load generator must stay cheaper than the server.
    """
    at = message.rfind(key)
    if at < 0:
        return None
    start = at + len(key)
    while message[start : start + 1] == b" ":
        start += 1
    end = start
    while message[end : end + 1].isdigit():
        end += 1
    return int(message[start:end]) if end > start else None


@dataclass
class Tally:
    """What every subscriber saw, shared by all of them (one event loop, no locks)."""

    ready: int = 0
    failed: int = 0
    delivered: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    last_delivery_ns: int = 0
    errors: list[str] = field(default_factory=list)

    def delivery(self, stamp: int) -> None:
        now = time.time_ns()
        self.delivered += 1
        self.latencies_ns.append(now - stamp)
        self.last_delivery_ns = now

    def error(self, exc: BaseException) -> None:
        if len(self.errors) < 5:
            self.errors.append(f"{type(exc).__name__}: {exc}")


async def subscribe(
    target: Target, transport: str, port: int, tally: Tally, connecting: asyncio.Semaphore
) -> None:
    """One subscriber, until cancelled; counts itself ready once subscribed."""
    try:
        if transport == "ws":
            await _ws_subscriber(target, port, tally, connecting)
        else:
            await _sse_subscriber(target, port, tally, connecting)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        tally.failed += 1
        tally.error(exc)


async def _ws_subscriber(
    target: Target, port: int, tally: Tally, connecting: asyncio.Semaphore
) -> None:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}{target.paths['ws']}"
    marker = target.ready_marker["ws"]
    async with connecting:
        ws = await connect(
            url,
            compression=None,
            ping_interval=None,
            open_timeout=120,
            max_size=2**24,
            user_agent_header=None,
        )
    ready = False
    try:
        while True:
            message: Any = await ws.recv(decode=False)
            if target.socketio:
                if message[:1] == b"0":  # Engine.IO open: join the default namespace
                    await ws.send("40")
                    continue
                if message == b"2":  # Engine.IO ping
                    await ws.send("3")
                    continue
                if not ready and message.startswith(marker):
                    ready = True
                    tally.ready += 1
                    continue
            elif not ready and marker in message:
                ready = True
                tally.ready += 1
                continue
            elif message.startswith(b'{"type":"ping"'):  # tidings' keep-alive
                await ws.send('{"type":"pong"}')
                continue
            stamp = find_stamp(message)
            if stamp is not None:
                tally.delivery(stamp)
    finally:
        # No closing handshake: with thousands of sockets it would dominate teardown.
        ws.transport.abort()


async def _sse_subscriber(
    target: Target, port: int, tally: Tally, connecting: asyncio.Semaphore
) -> None:
    marker = target.ready_marker["sse"]
    async with connecting:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {target.paths['sse']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
    try:
        status, headers = parse_head(head[:-4])
        if status != 200:
            raise ConnectionError(f"SSE request refused with HTTP {status}")
        chunked = ChunkedDecoder() if headers.get(b"transfer-encoding") == b"chunked" else None
        frames = FrameSplitter()
        ready = False
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the stream")
            for frame in frames.feed(chunked.feed(data) if chunked else data):
                if not ready:
                    if marker in frame:
                        ready = True
                        tally.ready += 1
                    continue
                stamp = find_stamp(frame)
                if stamp is not None:
                    tally.delivery(stamp)
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()
