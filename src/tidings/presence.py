"""Cluster presence: publish this node's subscriber counts, read everyone's.

With a shared broker, each node writes its own entry per channel to the
:class:`~tidings.backends.base.Presence` backend: at once (debounced) when its local
subscribers of a channel change, and all of them again every third of the entry
lifetime, so the entries of a node that died expire by themselves. A single-node hub
has no backend and answers from its own registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

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
    ) -> None:
        self.backend = backend
        self.fanout = fanout
        self.node = secrets.token_hex(6)
        self.ttl = ttl
        self.debounce = debounce
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
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_refresh - loop.time())):
                    await self._wake.wait()
                    await asyncio.sleep(self.debounce)  # gather a burst of (un)subscribes
            self._wake.clear()
            if loop.time() >= next_refresh:
                self._dirty.update(self.fanout.subscribers)
                next_refresh = loop.time() + refresh
            try:
                await self._flush()
            except Exception as exc:
                log.warning("presence update failed: %s", type(exc).__name__)

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
            await self.backend.close()
