"""Cluster presence: publish this node's subscriber counts, read everyone's.

With a shared broker, each node writes its own entry per channel to the
:class:`~tidings.backends.base.Presence` backend: at once (debounced) when its local
subscribers of a channel change, and all of them again every third of the entry
lifetime, so the entries of a node that died expire by themselves. A single-node hub
has no backend and answers from its own registry.

The same way, each node writes a listing of its connections (at most ``max_listed``
summaries, at most once per ``listing_interval`` when they changed, and at every
refresh), so that ``GET /api/v1/connections`` on any node lists every node's. The
answering node's own connections are always read from its registry, never from the
backend, so they are never stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidings.backends.base import Presence, PresenceEntry
from tidings.tasks import cancel_and_wait

if TYPE_CHECKING:
    from tidings.fanout import FanOut

__all__ = ["PresenceTracker"]

log = logging.getLogger("tidings.presence")


class PresenceTracker:
    """Keeps this node's presence entries current in a shared backend."""

    def __init__(
        self,
        backend: Presence | None,
        fanout: FanOut,
        *,
        ttl: float = 30.0,
        debounce: float = 0.05,
        node: str | None = None,
        listing: Callable[[int], list[dict[str, Any]]] | None = None,
        max_listed: int = 1000,
        listing_interval: float = 1.0,
    ) -> None:
        self.backend = backend
        self.fanout = fanout
        self.node = node or secrets.token_hex(6)
        self.ttl = ttl
        self.debounce = debounce
        #: This node's connection summaries, at most the number given.
        self.listing = listing
        self.max_listed = max_listed
        self.listing_interval = listing_interval
        self._listing_dirty = False
        self._listed_at = -math.inf
        self._dirty: set[str] = set()
        self._written: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def local(self, channel: str) -> PresenceEntry:
        subscribers = self.fanout.subscribers.get(channel, set())
        clients = sorted({c.client_id for c in subscribers if c.client_id is not None})
        return PresenceEntry(len(subscribers), tuple(clients))

    def changed(self, channel: str) -> None:
        if self.backend is None:
            return
        self._dirty.add(channel)
        if self._wake is not None:
            self._wake.set()

    def connections_changed(self) -> None:
        """A connection opened, closed or changed its channels: list it again soon."""
        if self.backend is None or self.listing is None:
            return
        self._listing_dirty = True
        if self._wake is not None:
            self._wake.set()

    async def other_listings(self) -> list[dict[str, Any]]:
        """The connection summaries the other live nodes listed (each with ``node``)."""
        if self.backend is None:
            return []
        listings = await self.backend.listings()
        return [row for node, rows in listings.items() if node != self.node for row in rows]

    async def get(self, channel: str) -> PresenceEntry:
        if self.backend is None:
            return self.local(channel)
        if channel in self._dirty:
            await self._flush()
        return await self.backend.get(channel)

    def start(self) -> None:
        if self.backend is not None and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="tidings-presence")

    async def _run(self) -> None:
        assert self._wake is not None
        refresh = self.ttl / 3
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + refresh
        while True:
            wake_at = next_refresh
            if self._listing_dirty:
                # A listing waits for its interval: a connect storm writes it once a second.
                wake_at = min(wake_at, self._listed_at + self.listing_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake_at - loop.time())):
                    await self._wake.wait()
                    await asyncio.sleep(self.debounce)  # gather a burst of (un)subscribes
            self._wake.clear()
            if loop.time() >= next_refresh:
                self._dirty.update(self.fanout.subscribers)
                self._listing_dirty = self.listing is not None
                next_refresh = loop.time() + refresh
            try:
                await self._flush()
                if self._listing_dirty and loop.time() >= self._listed_at + self.listing_interval:
                    await self._write_listing(loop.time())
            except Exception as exc:
                log.warning("presence update failed: %s", type(exc).__name__)

    async def _write_listing(self, now: float) -> None:
        assert self.backend is not None and self.listing is not None
        self._listing_dirty = False
        self._listed_at = now
        try:
            await self.backend.update_listing(self.node, self.listing(self.max_listed), self.ttl)
        except Exception:
            self._listing_dirty = True  # try again on the next round
            raise

    async def _flush(self) -> None:
        if self.backend is None or not self._dirty:
            return
        channels, self._dirty = self._dirty, set()
        entries = {channel: self.local(channel) for channel in channels}
        try:
            await self.backend.update(self.node, entries, self.ttl)
        except Exception:
            self._dirty |= channels  # try again on the next round
            raise
        for channel, entry in entries.items():
            if entry.connections:
                self._written.add(channel)
            else:
                self._written.discard(channel)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self.backend is not None:
            # Leave the cluster's counts at once rather than when the entries expire.
            with contextlib.suppress(Exception):
                await self.backend.update(
                    self.node,
                    {channel: PresenceEntry(0) for channel in self._written},
                    self.ttl,
                )
            if self.listing is not None:
                with contextlib.suppress(Exception):
                    await self.backend.update_listing(self.node, [], self.ttl)
            await self.backend.close()
