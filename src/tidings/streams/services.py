"""What every stream of one hub shares: the node, the flusher and one clock.

Heartbeats and pings need a clock, not a timer per connection: one timer goes over every
stream a few times per interval, and stops while there are none. Both stream paths use
the same :class:`Streams` of a hub, so a hub that serves some streams natively and some
through an embedding ASGI app keeps one clock and one flusher.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from tidings.core.routes import RouteTable
from tidings.node import Node
from tidings.streams.flush import Flusher

__all__ = ["DUE", "Streams", "Ticking"]

#: A heartbeat or ping is due this share of its interval after the last one: the clock
#: ticks a few times per interval, and a tick just short of it must not wait a period.
DUE = 0.9


class Ticking(Protocol):
    def tick(self, now: float) -> None:
        """Periodic upkeep: pings, heartbeats, closing stale connections."""


class Streams:
    """The shared services of a hub's streams; see the module docstring."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.flusher = Flusher()
        settings = node.settings
        #: Which paths are streams: the hub's own, then the ``[[routes]]`` of the settings.
        self.routes = RouteTable(route.route() for route in settings.routes)
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
