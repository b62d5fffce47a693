"""One live stream connection: its session, its identity, and the pump that drains it.

A :class:`Connection` does not know its transport. The SSE and WebSocket endpoints give
it a function that writes a batch of frames and a function that answers timer ticks
(heartbeat, ping); the connection pumps frames from its session into the first and
stops when the session is closed. When a session is closed while the transport is
stuck writing (a client that stopped reading), the pump is cancelled after
``close_timeout`` so that a dead peer can never hold the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

from tidings.core.events import format_timestamp
from tidings.core.session import Frame, Session, SlowConsumerPolicy, State, Wire
from tidings.identity import Identity

__all__ = ["Connection", "Transport"]

log = logging.getLogger("tidings.connection")

Transport = Literal["sse", "websocket"]


class Connection:
    """A connection's bookkeeping; see the module docstring."""

    close_timeout = 2.0

    def __init__(
        self,
        *,
        transport: Transport,
        wire: Wire,
        identity: Identity,
        remote: str | None,
        max_frames: int,
        max_bytes: int,
        slow_consumer: SlowConsumerPolicy,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.transport: Transport = transport
        self.identity = identity
        self.remote = remote
        self.connected_at = format_timestamp(datetime.now(UTC))
        self.session = Session(
            wire,
            max_frames=max_frames,
            max_bytes=max_bytes,
            slow_consumer=slow_consumer,
            on_ready=on_ready or self._wake,
        )
        # Only a pumped connection (the ASGI endpoints) waits on this; the native data
        # plane is told through ``on_ready`` and has no task to wake.
        self.ready: asyncio.Event | None = None
        self.last_seen = time.monotonic()
        self._pump_task: asyncio.Task[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._abort_armed = False
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def client_id(self) -> str | None:
        return self.identity.client_id

    def log_extra(self) -> dict[str, Any]:
        return {"connection_id": self.id, "transport": self.transport}

    def _wake(self) -> None:
        if self.ready is not None:
            self.ready.set()
        if (
            self.session.state is State.CLOSING
            and self._pump_task is not None
            and not self._abort_armed
        ):
            self._abort_armed = True
            # Give the transport a moment to send the disconnect frame; a peer that does
            # not read by then is cut off.
            loop = self._pump_task.get_loop()
            self._timers.append(loop.call_later(self.close_timeout, self._abort))

    def _abort(self) -> None:
        task = self._pump_task
        if task is not None and not task.done():
            log.info("connection did not drain in time; cutting it off", extra=self.log_extra())
            task.cancel()

    def close(self, reason: str) -> None:
        """Ask the connection to end: the client gets a ``disconnect`` with ``reason``."""
        if self.session.alive:
            log.info("closing connection", extra={**self.log_extra(), "reason": reason})
            self.session.close(reason)

    def expire_at(self, when: float) -> None:
        """Close with ``token_expired`` at Unix time ``when``; replaces an earlier expiry."""
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, when - time.time()), self.close, "token_expired")

    def close_at(self, when: float, reason: str) -> None:
        """Close with ``reason`` at Unix time ``when`` (token expiry, maximum age)."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time())
        self._timers.append(loop.call_later(delay, self.close, reason))

    async def pump(
        self,
        send_frames: Callable[[list[Frame]], Awaitable[None]],
        *,
        tick: float,
        on_tick: Callable[[], None],
    ) -> None:
        """Send queued frames until the session is closed; call ``on_tick`` every ``tick``
        seconds, busy or not (pings must go out to a client that only receives)."""
        self._pump_task = asyncio.current_task()
        session = self.session
        ready = self.ready = asyncio.Event()
        if len(session.outbox) or not session.alive:
            ready.set()
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + tick
        try:
            while True:
                if loop.time() >= next_tick:
                    next_tick = loop.time() + tick
                    on_tick()
                if not ready.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                            await ready.wait()
                    continue
                ready.clear()
                frames = session.take_frames()
                if frames:
                    await send_frames(frames)
                if not session.alive and not len(session.outbox):
                    return
        finally:
            self._pump_task = None

    async def serve(
        self,
        send_frames: Callable[[list[Frame]], Awaitable[None]],
        *,
        tick: float,
        on_tick: Callable[[], None],
        until: Coroutine[Any, Any, None],
    ) -> bool:
        """Pump frames until the session ends or ``until`` (the transport's reader or
        disconnect watcher) returns; cancel the other. True when the session ended."""
        pump = asyncio.create_task(self.pump(send_frames, tick=tick, on_tick=on_tick))
        other = asyncio.create_task(until)
        done: set[asyncio.Task[None]] = set()
        try:
            done, _ = await asyncio.wait({pump, other}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, other):
                task.cancel()
            for task in (pump, other):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return pump in done and other not in done

    def release(self) -> None:
        """Drop timers and mark the session closed. Called once the transport is gone."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.session.closed()

    def info(self) -> dict[str, Any]:
        """The entry of ``GET /api/v1/connections``."""
        return {
            "id": self.id,
            "client_id": self.identity.client_id,
            "tenant": self.identity.tenant,
            "transport": self.transport,
            "remote": self.remote,
            "channels": sorted(self.session.subscriptions),
            "connected_at": self.connected_at,
            "queued": len(self.session.outbox),
            "state": self.session.state.value,
        }
