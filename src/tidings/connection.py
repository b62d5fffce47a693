"""One live stream connection: its session, its identity, and its timers.

A :class:`Connection` does not know its transport: its session calls ``on_ready`` when it
has frames, and the stream that owns the connection (:mod:`tidings.streams`) hands them
to the transport. When a session is closed while the transport is stuck writing (a
client that stopped reading), the transport is cut off after :attr:`close_timeout`, so
that a dead peer can never hold the hub.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from tidings.core.events import format_timestamp
from tidings.core.request import Peer, format_peer
from tidings.core.session import Session, SlowConsumerPolicy, Wire
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
        peer: Peer | None,
        max_frames: int,
        max_bytes: int,
        slow_consumer: SlowConsumerPolicy,
        on_ready: Callable[[], None],
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.transport: Transport = transport
        self.identity = identity
        #: The client's (host, port), behind trusted proxies.
        self.peer = peer
        self.remote = format_peer(peer)
        self.connected_at = format_timestamp(datetime.now(UTC))
        self.session = Session(
            wire,
            max_frames=max_frames,
            max_bytes=max_bytes,
            slow_consumer=slow_consumer,
            on_ready=on_ready,
        )
        self.last_seen = time.monotonic()
        #: Channels the server chose for this connection (automatic channels,
        #: server-side subscriptions): kept when a token refresh narrows its rights.
        self.server_channels: set[str] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def client_id(self) -> str | None:
        return self.identity.client_id

    def log_extra(self) -> dict[str, Any]:
        return {"connection_id": self.id, "transport": self.transport}

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
