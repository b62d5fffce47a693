"""A lean closed-loop HTTP/1.1 load generator: keep-alive POSTs over raw asyncio transports.

A general HTTP client spends more CPU per request than the server it is measuring, so
this one does the least that is still correct: each connection keeps exactly one
hand-written request in flight, parses only the status line and ``Content-Length`` of
the answer (:class:`ResponseParser`, Sans-I/O), and writes the next request from the
data callback itself, without a task switch. It never follows redirects, never decodes
a body and refuses responses without a ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

__all__ = ["LoadGenerator", "LoadSnapshot", "ResponseParser", "build_post"]


def build_post(host: str, port: int, path: str, body: bytes) -> bytes:
    """One keep-alive ``POST`` of a JSON body, ready to write as is, as often as needed."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class ResponseParser:
    """Bytes of a keep-alive response stream in, the status of each complete response out."""

    __slots__ = ("_buffer", "_remaining", "_status")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._status: int | None = None  # of the response whose body is being skipped
        self._remaining = 0  # body bytes of that response still to come

    def feed(self, data: bytes) -> list[int]:
        """Consume ``data``; the statuses of the responses it completed, in order.

        Raises :class:`ValueError` on a response it cannot frame (no ``Content-Length``).
        """
        buffer = self._buffer
        buffer += data
        done: list[int] = []
        while True:
            if self._status is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return done
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._status = int(head[9:12])
                self._remaining = _content_length(head)
            taken = min(self._remaining, len(buffer))
            if taken:
                del buffer[:taken]
                self._remaining -= taken
            if self._remaining:
                return done
            done.append(self._status)
            self._status = None


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError(f"a response without Content-Length: {head[:200]!r}")
    start = at + len(b"\r\ncontent-length:")
    end = head.find(b"\r\n", start)
    return int(head[start : end if end >= 0 else len(head)])


@dataclass
class LoadSnapshot:
    """What the connections did since the last :meth:`LoadGenerator.reset`."""

    requests: int
    wall_s: float
    latencies_ns: list[int]
    statuses: dict[int, int]
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)


class _Stats:
    """Counters shared by every connection of one generator (one event loop, no locks)."""

    def __init__(self) -> None:
        self.requests = 0
        self.latencies_ns: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(text)


class _Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, request: bytes, stats: _Stats, generator: LoadGenerator) -> None:
        self.request = request
        self.stats = stats
        self.generator = generator
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.sent_ns = 0
        self.in_flight = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.in_flight = True
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            statuses = self.parser.feed(data)
        except ValueError as exc:
            self.stats.error(str(exc))
            if self.transport is not None:
                self.transport.abort()
            return
        if not statuses:
            return
        now = time.perf_counter_ns()
        stats = self.stats
        for status in statuses:
            stats.requests += 1
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
        stats.latencies_ns.append(now - self.sent_ns)
        self.in_flight = False
        if self.generator.running:
            self.send()
        else:
            self.generator.idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.generator.running or self.in_flight:
            self.stats.error(f"connection lost: {exc!r}")
        self.in_flight = False
        self.generator.idle()
        if not self.closed.done():
            self.closed.set_result(None)


class LoadGenerator:
    """``connections`` keep-alive connections sending the same request in a closed loop.

    ``await open()``, :meth:`start`, then :meth:`reset` at the start of the measured
    window and :meth:`snapshot` at its end; ``await stop()`` lets in-flight requests
    finish (bounded) and closes every connection.
    """

    def __init__(self, host: str, port: int, request: bytes, *, connections: int) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.connections = connections
        self.running = False
        self._stats = _Stats()
        self._clients: list[_Client] = []
        self._since = time.perf_counter()
        self._idle = asyncio.Event()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, client = await loop.create_connection(
                lambda: _Client(self.request, self._stats, self), self.host, self.port
            )
            self._clients.append(client)

    def start(self) -> None:
        self.running = True
        self.reset()
        for client in self._clients:
            client.send()

    def reset(self) -> None:
        """Forget what was measured so far (the end of a warm-up)."""
        self._stats.requests = 0
        self._stats.latencies_ns = []
        self._stats.statuses = {}
        self._since = time.perf_counter()

    def snapshot(self) -> LoadSnapshot:
        stats = self._stats
        return LoadSnapshot(
            requests=stats.requests,
            wall_s=time.perf_counter() - self._since,
            latencies_ns=list(stats.latencies_ns),
            statuses=dict(stats.statuses),
            errors=list(stats.errors),
        )

    @property
    def completed(self) -> int:
        return self._stats.requests

    def idle(self) -> None:
        if not any(client.in_flight for client in self._clients):
            self._idle.set()

    async def stop(self, *, grace: float = 5.0) -> None:
        self.running = False
        if any(client.in_flight for client in self._clients):
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        for client in self._clients:
            if client.transport is not None:
                client.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*(client.closed for client in self._clients))


async def run_window(
    generator: LoadGenerator,
    *,
    warmup: float,
    duration: float,
    on_window: Callable[[bool], None],
    progress: Callable[[float, float], None],
) -> LoadSnapshot:
    """Run ``warmup`` seconds unmeasured, then ``duration`` measured seconds.

    ``on_window(True)`` is called right after the measured window opens and
    ``on_window(False)`` right before it closes (to read the server's CPU clock).
    """
    generator.start()
    await asyncio.sleep(warmup)
    generator.reset()
    on_window(True)
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < duration:
        progress(elapsed, duration)
        await asyncio.sleep(min(0.1, duration - elapsed))
    on_window(False)
    snapshot = generator.snapshot()
    progress(duration, duration)
    await generator.stop()
    return snapshot
