"""What every native stream of one server shares: the hub, the flusher and one clock."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

from tidings.dataplane.flush import Flusher

if TYPE_CHECKING:
    from tidings.node import Node

__all__ = ["DataPlane", "Ticking"]


class Ticking(Protocol):
    def tick(self, now: float) -> None:
        """Periodic upkeep: pings, heartbeats, closing stale connections."""


class DataPlane:
    """The native data plane of one ``tidings serve`` process.

    Pings and heartbeats need a clock, not a timer per connection: one timer goes over
    every stream a few times per interval, and stops while there are none.
    """

    def __init__(self, hub: Node, *, proxy_headers: bool = True, trusted: Any = "127.0.0.1"):
        self.hub = hub
        self.flusher = Flusher()
        self.proxy_headers = proxy_headers
        self.trusted = trusted
        settings = hub.settings
        self.period = max(0.01, min(settings.heartbeat, settings.ping_interval) / 4)
        self._streams: set[Ticking] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, stream: Ticking) -> None:
        self._streams.add(stream)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.period, self._tick)

    def discard(self, stream: Ticking) -> None:
        self._streams.discard(stream)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        for stream in list(self._streams):
            stream.tick(now)
        if self._streams:
            self._timer = asyncio.get_running_loop().call_later(self.period, self._tick)
