"""Records in this process's memory: for the memory store, gone on restart."""

from __future__ import annotations

from tidings.backends.base import records_full

__all__ = ["MemoryRecords"]


class MemoryRecords:
    """A :class:`~tidings.backends.base.Records` in dicts: ``namespace -> key -> (record,
    ready)``. Claims scan the namespace's ready records (namespaces are bounded by the
    limits their users pass)."""

    def __init__(self) -> None:
        self._spaces: dict[str, dict[str, tuple[bytes, float | None]]] = {}

    async def put(
        self,
        namespace: str,
        key: str,
        record: bytes,
        *,
        ready: float | None,
        if_absent: bool = False,
        limit: int | None = None,
    ) -> bool:
        space = self._spaces.setdefault(namespace, {})
        if key in space:
            if if_absent:
                return False
        elif limit is not None and sum(r is not None for _, r in space.values()) >= limit:
            raise records_full(limit)
        space[key] = (record, ready)
        return True

    async def get(self, namespace: str, key: str) -> bytes | None:
        found = self._spaces.get(namespace, {}).get(key)
        return None if found is None else found[0]

    async def delete(self, namespace: str, key: str) -> bool:
        return self._spaces.get(namespace, {}).pop(key, None) is not None

    async def drop(self, namespace: str) -> None:
        self._spaces.pop(namespace, None)

    async def newest(self, namespace: str, *, limit: int = 1000) -> list[bytes]:
        space = self._spaces.get(namespace, {})
        return [space[key][0] for key in sorted(space, reverse=True)[:limit]]

    async def claim(self, namespace: str, now: float, *, lease: float, limit: int) -> list[bytes]:
        space = self._spaces.get(namespace, {})
        due = sorted(
            (ready, key) for key, (_, ready) in space.items() if ready is not None and ready <= now
        )[:limit]
        claimed = []
        for _, key in due:
            record = space[key][0]
            space[key] = (record, now + lease)
            claimed.append(record)
        return claimed

    async def ready_count(self, namespace: str) -> int:
        return sum(ready is not None for _, ready in self._spaces.get(namespace, {}).values())

    async def close(self) -> None:
        return None
