"""This node's open connections: the limits on them, lookup by client, and totals.

The registry only counts and finds; it never closes a connection by itself. What must
never happen: a connection admitted past ``max_connections`` or
``max_connections_per_client``, or one forgotten while its transport is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from tidings.connection import Connection
from tidings.errors import LimitExceeded
from tidings.identity import Identity

__all__ = ["Counters", "Registry"]


@dataclass(slots=True)
class Counters:
    """Totals since the hub started, for metrics and tests."""

    published: int = 0
    delivered_closed: int = 0
    dropped_closed: int = 0
    slow_consumer_disconnects: int = 0
    connections_opened: int = 0
    nowait_failed: int = 0
    #: ``nowait_failed`` is counted from any thread; ``+=`` on an attribute is not atomic.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def nowait_failure(self) -> None:
        with self.lock:
            self.nowait_failed += 1


class Registry:
    """The connections of one node, by id and by client id."""

    def __init__(self, *, max_connections: int, max_connections_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.connections: dict[str, Connection] = {}
        # client id -> its connections on this node: limits and targeting without a scan.
        self._by_client: dict[str, set[Connection]] = {}
        self.counters = Counters()
        self._all_closed = asyncio.Event()

    def check_room(self, identity: Identity) -> None:
        """Raise :class:`LimitExceeded` if one more connection of ``identity`` is too many."""
        if len(self.connections) >= self.max_connections:
            raise LimitExceeded(
                "the hub is at its connection limit", code="too_many_connections", retry_after=5
            )
        client_id = identity.client_id
        if client_id is not None and (
            len(self._by_client.get(client_id, ())) >= self.max_connections_per_client
        ):
            raise LimitExceeded(
                "this client has too many connections",
                code="too_many_connections",
                retry_after=5,
            )

    def add(self, connection: Connection) -> None:
        self.connections[connection.id] = connection
        client_id = connection.client_id
        if client_id is not None:
            self._by_client.setdefault(client_id, set()).add(connection)
        self.counters.connections_opened += 1

    def remove(self, connection: Connection) -> bool:
        """Forget ``connection`` and add its totals; False if it was not registered."""
        if self.connections.pop(connection.id, None) is None:
            return False
        same_client = self._by_client.get(connection.client_id or "")
        if same_client is not None:
            same_client.discard(connection)
            if not same_client:
                del self._by_client[connection.client_id or ""]
        if not self.connections:
            self._all_closed.set()
        session = connection.session
        counters = self.counters
        counters.delivered_closed += session.delivered
        counters.dropped_closed += session.dropped
        if session.close_reason == "slow_consumer":
            counters.slow_consumer_disconnects += 1
        return True

    def clients(self, client_id: str) -> Iterable[Connection]:
        """This node's connections of ``client_id``."""
        return tuple(self._by_client.get(client_id, ()))

    async def all_closed(self, grace: float) -> None:
        """Wait, at most ``grace`` s, until no connection is left."""
        if self.connections:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._all_closed.wait()

    def delivered_total(self) -> int:
        return self.counters.delivered_closed + sum(
            c.session.delivered for c in self.connections.values()
        )

    def dropped_total(self) -> int:
        return self.counters.dropped_closed + sum(
            c.session.dropped for c in self.connections.values()
        )

    def by_transport(self) -> dict[str, int]:
        counts = {"sse": 0, "websocket": 0}
        for connection in self.connections.values():
            counts[connection.transport] += 1
        return counts
