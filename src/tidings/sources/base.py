"""The two small interfaces of a source: what it is (:class:`Source`) and where it
publishes (:class:`Sink`, which the node is). See :mod:`tidings.sources`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tidings.core.events import Event, Publication
from tidings.tasks import cancel_and_wait

__all__ = ["Sink", "Source", "TaskSource"]


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


class TaskSource:
    """A :class:`Source` that runs as one task: subclasses write :meth:`_run` (and
    :meth:`_closed`, for what they hold), and set ``_status`` as they go."""

    name: str
    #: What the task is called (``source <name>``).
    task_label = "source"

    def __init__(self) -> None:
        self._status = "starting"
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        return self._status

    async def start(self, sink: Sink) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(sink), name=f"{self.task_label} {self.name}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._closed()
        self._status = "stopped"

    async def _run(self, sink: Sink) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        """Release what the source holds, once its task has ended."""
