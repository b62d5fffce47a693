"""The two small interfaces of a source: what it is (:class:`Source`) and where it
publishes (:class:`Sink`, which the node is). See :mod:`tidings.sources`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tidings.core.events import Event, Publication

__all__ = ["Sink", "Source"]


class Sink(Protocol):
    """Where a source publishes: the node."""

    @property
    def max_batch_size(self) -> int:
        """Events ``publish_many`` takes at once."""
        ...

    async def publish_many(self, publications: Sequence[Publication]) -> list[Event]:
        """Publish in order; raise a ``TidingsError`` (5xx: try again later)."""
        ...


@runtime_checkable
class Source(Protocol):
    """Something the hub consumes events from.

    * :meth:`start` returns at once: the source runs in a task of its own, and survives
      its upstream being down (it logs, backs off and reconnects).
    * :meth:`stop` cancels that task and closes what it holds; idempotent.
    * :attr:`name` is safe to log (no password); :attr:`status` is a word for ``/ready``
      (``starting``, ``consuming``, ``standby``, ``failing``).
    """

    name: str

    @property
    def status(self) -> str: ...

    async def start(self, sink: Sink) -> None: ...

    async def stop(self) -> None: ...
