"""Scheduled events in this process's memory: for the memory store, gone on restart."""

from __future__ import annotations

import heapq

from tidings.backends.base import schedules_full
from tidings.core.scheduled import Scheduled

__all__ = ["MemorySchedules"]


class MemorySchedules:
    """A :class:`~tidings.backends.base.Schedules` in a dict and a heap.

    The heap holds ``(ready, key, version)``: when an entry may next be claimed (its due
    time, or the end of its lease). Entries replaced, cancelled or re-leased leave stale
    heap items behind, which are skipped when they surface (their version or ready time
    no longer matches), so every operation is O(log n).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Scheduled, float]] = {}
        self._heap: list[tuple[float, str, str]] = []

    def _ready(self, entry: Scheduled, ready: float) -> None:
        self._entries[entry.key] = (entry, ready)
        heapq.heappush(self._heap, (ready, entry.key, entry.version))

    def _current(self, item: tuple[float, str, str]) -> bool:
        ready, key, version = item
        found = self._entries.get(key)
        return found is not None and found[0].version == version and found[1] == ready

    async def put(self, entry: Scheduled, *, limit: int) -> Scheduled | None:
        old = self._entries.get(entry.key)
        if old is None and len(self._entries) >= limit:
            raise schedules_full(limit)
        self._ready(entry, entry.at)
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [item for item in self._heap if self._current(item)]
            heapq.heapify(self._heap)
        return None if old is None else old[0]

    async def get(self, key: str) -> Scheduled | None:
        found = self._entries.get(key)
        return None if found is None else found[0]

    async def cancel(self, key: str) -> Scheduled | None:
        found = self._entries.pop(key, None)
        return None if found is None else found[0]

    async def pending(self, *, channel: str | None = None, limit: int = 1000) -> list[Scheduled]:
        entries = [e for e, _ in self._entries.values() if channel is None or e.channel == channel]
        entries.sort(key=lambda e: (e.at, e.key))
        return entries[:limit]

    async def claim(self, now: float, *, lease: float, limit: int) -> list[Scheduled]:
        claimed: list[Scheduled] = []
        heap = self._heap
        while heap and len(claimed) < limit and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if not self._current(item):
                continue
            entry = self._entries[item[1]][0]
            self._ready(entry, now + lease)
            claimed.append(entry)
        return claimed

    async def done(self, entry: Scheduled) -> None:
        found = self._entries.get(entry.key)
        if found is not None and found[0].version == entry.version:
            del self._entries[entry.key]

    async def next_due(self) -> float | None:
        heap = self._heap
        while heap and not self._current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    async def count(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        return None
