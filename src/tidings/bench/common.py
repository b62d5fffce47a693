"""What every measurement mode of ``tidings bench`` other than fan-out shares: its
options, the report it hands back, and how a tidings server is started for it.

Nothing here measures anything; the modes live in ``mode_*.py``. The fan-out mode
(:mod:`tidings.bench.run`) keeps its own types so that its output never changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tidings.bench import procstat
from tidings.bench.run import _server, _wait_healthy, cores
from tidings.bench.targets import Target

__all__ = [
    "ModeOptions",
    "ModeReport",
    "Progress",
    "Served",
    "open_files_limit",
    "percentiles_ms",
    "serve",
]


class Progress(Protocol):
    """Called while a mode runs, to drive the progress bar: ``unit`` ``"s"`` for time."""

    def __call__(self, phase: str, done: float, total: float, unit: str = "") -> None: ...


@dataclass(frozen=True)
class ModeOptions:
    """Every knob of the non-fan-out modes; each mode reads the ones it needs."""

    servers: tuple[str, ...] = ("tidings", "handrolled")
    #: publish, inprocess: measured seconds per phase.
    duration: float = 5.0
    #: publish: concurrent keep-alive connections of the load generator.
    connections: int = 16
    #: publish, inprocess: events per batch.
    batch: int = 1000
    #: publish, inprocess: bytes of padding in each event's data.
    size: int = 100
    #: connections: WebSocket connections to open.
    subscribers: int = 10_000
    #: connections: events published once everyone is connected; replay: events replayed.
    events: int = 5
    #: connections: handshakes in flight at once.
    connect_concurrency: int = 200
    #: connections: seconds allowed for all the handshakes.
    connect_timeout: float = 120.0
    #: connections: give up after this many seconds without a delivery.
    drain_timeout: float = 10.0
    #: replay: resumes timed per store and over the network.
    repetitions: int = 200
    #: chaos: events per second in all (fan-out takes ``--rate`` too, in its own config).
    rate: float = 20.0
    #: chaos: hub nodes on one Redis.
    nodes: int = 3
    #: chaos: channels the events are spread over.
    channels: int = 10


@dataclass
class ModeReport:
    """A finished mode: a table to print and a JSON document, and whether it passed.

    ``ok`` is false only when the run itself shows a failure the issue rules out
    (refused connections, missed deliveries, failed requests), never for a slow figure.
    """

    mode: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    #: Leading columns that hold text (left-aligned); the rest are figures.
    text_columns: int = 1


@dataclass(frozen=True)
class Served:
    """A server under test, running: its process id and port, and whether it is pinned."""

    pid: int
    port: int
    pinned: bool


@contextlib.asynccontextmanager
async def serve(
    target: Target,
    *,
    subscribers: int = 0,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> AsyncIterator[Served]:
    """Start ``target`` on a free port, pinned like the fan-out mode pins it (server on
    the first usable core, this process on the second), and wait until it is healthy."""
    pair = cores()
    if pair:
        procstat.pin(0, pair[1])
    changed = dataclasses.replace(
        target,
        extra_args=(*target.extra_args, *extra_args),
        env={**target.env, **(env or {})},
    )
    with _server(changed, subscribers) as (process, port):
        if pair:
            procstat.pin(process.pid, pair[0])
        await _wait_healthy(process, port, changed.health_path)
        if pair:  # threads the server started while booting
            procstat.pin(process.pid, pair[0])
        yield Served(process.pid, port, pair is not None)


def open_files_limit(pid: int) -> int | None:
    """The soft ``Max open files`` of a running process, from ``/proc/<pid>/limits``."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    return None


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    """p50, p90, p99 and max of nanosecond samples, in milliseconds (0 when empty)."""
    if not samples_ns:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples_ns)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return ordered[min(last, round(q * last))] / 1e6

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1] / 1e6}
