"""Many idle WebSocket subscribers in one event loop, as cheap as a connection can be.

Each :class:`Subscriber` is a bare :class:`asyncio.Protocol` around the Sans-I/O
:mod:`tidings.bench.wsclient`: it writes the handshake, waits for tidings'
``subscribed`` message, answers tidings' JSON pings, and counts the probe events
(``{"probe":k,"t":<time_ns>}`` in their data, found in the raw bytes) into a shared
:class:`Census`. It keeps no message it does not need and decodes none.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

from tidings.bench.load import number_after
from tidings.bench.wsclient import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    close_code,
    encode_frame,
    handshake,
    handshake_status,
)

__all__ = ["Census", "Subscriber", "open_subscriber"]

_PONG = encode_frame(b'{"type":"pong"}')


@dataclass
class Census:
    """What every subscriber saw, shared by all of them (one event loop, no locks)."""

    ready: int = 0
    refused: int = 0
    failed: int = 0
    #: Connections that closed after they were subscribed.
    lost: int = 0
    connect_ns: list[int] = field(default_factory=list)
    #: probe number -> subscribers that received it.
    received: dict[int, int] = field(default_factory=dict)
    #: probe number -> receive time_ns of its last delivery so far.
    last_receive_ns: dict[int, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Set when the run tears the connections down: closes from then on are expected.
    closing: bool = False

    @property
    def settled(self) -> int:
        return self.ready + self.refused + self.failed

    @property
    def deliveries(self) -> int:
        return sum(self.received.values())

    def error(self, text: str) -> None:
        if len(self.errors) < 5 and text not in self.errors:
            self.errors.append(text)


class Subscriber(asyncio.Protocol):
    """One WebSocket subscriber; ``settled`` resolves once it is subscribed or refused."""

    def __init__(self, census: Census, request: bytes, accept: bytes) -> None:
        self.census = census
        self.request = request
        self.accept = accept
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.reader: FrameReader | None = None  # set once the handshake is done
        self.state = "connecting"  # -> ready | refused | failed | lost
        self.started_ns = time.perf_counter_ns()
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def _settle(self, state: str, error: str | None = None) -> None:
        if self.state != "connecting" or self.census.closing:
            return
        self.state = state
        census = self.census
        if state == "ready":
            census.ready += 1
            census.connect_ns.append(time.perf_counter_ns() - self.started_ns)
        elif state == "refused":
            census.refused += 1
        else:
            census.failed += 1
        if error:
            census.error(error)
        if not self.settled.done():
            self.settled.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.reader is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = handshake_status(bytes(self.head[:end]), self.accept)
            if status != 101:
                self._settle("refused", f"handshake answered HTTP {status}")
                self.abort()
                return
            data = bytes(self.head[end + 4 :])
            self.head = bytearray()
            self.reader = FrameReader()
        try:
            messages = self.reader.feed(data)
        except ValueError as exc:
            self._settle("failed", str(exc))
            self.abort()
            return
        for opcode, payload in messages:
            if opcode == TEXT:
                self._text(payload)
            elif opcode == PING:
                self.send(encode_frame(payload, PONG))
            elif opcode == CLOSE:
                self._closed(close_code(payload))

    def _text(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"event"'):
            probe = number_after(payload, b'"probe":')
            if probe is not None:
                now = time.time_ns()
                census = self.census
                census.received[probe] = census.received.get(probe, 0) + 1
                census.last_receive_ns[probe] = now
                sent = number_after(payload, b'"t":')
                if sent is not None:
                    census.latencies_ns.append(now - sent)
        elif payload.startswith(b'{"type":"ping"'):
            self.send(_PONG)
        elif self.state == "connecting":
            if payload.startswith(b'{"type":"subscribed"'):
                self._settle("ready")
            elif payload.startswith(b'{"type":"error"'):
                self._settle("refused", payload[:200].decode(errors="replace"))

    def _closed(self, code: int | None) -> None:
        if self.census.closing:
            pass
        elif self.state == "connecting":
            self._settle("refused", f"closed with code {code} before subscribing")
        elif self.state == "ready":
            self.state = "lost"
            self.census.lost += 1
            self.census.error(f"closed with code {code} after subscribing")
        self.abort()

    def give_up(self, reason: str) -> None:
        """Count a subscriber still connecting as failed, and drop its connection."""
        self._settle("failed", reason)
        self.abort()

    def send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def abort(self) -> None:
        # No closing handshake: with thousands of sockets it would dominate teardown.
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.census.closing:
            return
        if self.state == "connecting":
            self._settle("failed", f"connection lost before subscribing: {exc!r}")
        elif self.state == "ready":
            self.state = "lost"
            self.census.lost += 1
            self.census.error(f"connection lost after subscribing: {exc!r}")


async def open_subscriber(
    census: Census, port: int, path: str, *, within: float
) -> Subscriber | None:
    """Connect one subscriber and wait until it is settled (at most ``within`` s).

    Returns the subscriber (also when refused), or ``None`` when it could not connect.
    """
    request, accept = handshake("127.0.0.1", port, path)
    loop = asyncio.get_running_loop()
    subscriber: Subscriber | None = None

    def made() -> Subscriber:
        # Kept at once: a connection cut off by the timeout still reports through it.
        nonlocal subscriber
        subscriber = Subscriber(census, request, accept)
        return subscriber

    try:
        async with asyncio.timeout(within):
            _, protocol = await loop.create_connection(made, "127.0.0.1", port)
            await protocol.settled
    except (OSError, TimeoutError, asyncio.CancelledError) as exc:
        reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else "timed out"
        if subscriber is None:
            census.failed += 1
            census.error(f"connect: {type(exc).__name__}: {exc}" if exc.args else reason)
        else:
            subscriber.give_up(f"not subscribed within {within:g} s ({reason})")
        if isinstance(exc, asyncio.CancelledError):
            raise
    return subscriber
