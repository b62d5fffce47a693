"""``tidings bench --mode inprocess``: ``Hub.publish`` throughput in this very process.

No server and no socket: a :class:`~tidings.hub.Hub` with the default settings (memory
store and broker) and no subscribers, driven as fast as one coroutine can await it,
first one event per call (``hub.publish``), then batches (``hub.publish_many``). Each
phase has a short unmeasured warm-up, then ``duration`` measured seconds. This process
is pinned to the first usable core, the one a server gets in the other modes.
"""

from __future__ import annotations

import time
from typing import Any

from tidings.bench import procstat
from tidings.bench.common import ModeOptions, ModeReport, Progress
from tidings.bench.run import cores
from tidings.hub import Hub, Publication
from tidings.settings import Settings

__all__ = ["run_inprocess"]

CHANNEL = "bench-inprocess"


async def _phase(
    hub: Hub, kind: str, batch: int, data: dict[str, Any], duration: float, progress: Progress
) -> dict[str, Any]:
    publications = [Publication(CHANNEL, "bench", data)] * batch
    warmup = min(0.5, duration / 5)
    calls = 0
    started = time.perf_counter()
    measuring = False
    cpu_start = time.process_time()
    deadline = started + warmup
    next_report = started
    while True:
        if batch == 1:
            await hub.publish(CHANNEL, "bench", data)
        else:
            await hub.publish_many(publications)
        calls += 1
        now = time.perf_counter()
        if now >= next_report:
            next_report = now + 0.1
            progress(kind, max(0.0, now - deadline) if measuring else 0.0, duration, "s")
        if now < deadline:
            continue
        if measuring:
            break
        # The warm-up is over: the measured window starts now.
        measuring = True
        calls = 0
        started = now
        deadline = now + duration
        cpu_start = time.process_time()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_start
    events = calls * batch
    return {
        "kind": kind,
        "events_per_call": batch,
        "calls": calls,
        "events": events,
        "wall_s": wall,
        "calls_per_s": calls / wall,
        "events_per_s": events / wall,
        "us_per_event": wall * 1e6 / events if events else 0.0,
        "cpu_us_per_event": cpu * 1e6 / events if events else 0.0,
        "cpu_percent": 100 * cpu / wall,
    }


async def run_inprocess(options: ModeOptions, progress: Progress) -> ModeReport:
    """``hub.publish`` in a loop, then ``hub.publish_many`` in batches of ``options.batch``."""
    pair = cores()
    pinned = procstat.pin(0, pair[0]) if pair else False
    settings = Settings()
    batch = min(options.batch, settings.max_batch_size)
    data = {"pad": "x" * options.size}
    results = []
    async with Hub(settings) as hub:
        results.append(await _phase(hub, "publish", 1, data, options.duration, progress))
        results.append(
            await _phase(hub, f"publish_many {batch}", batch, data, options.duration, progress)
        )
        published = hub.counters.published
    expected = sum(r["events"] for r in results)
    rows = [
        [
            r["kind"],
            f"{r['events_per_call']:,}",
            f"{r['calls']:,}",
            f"{r['calls_per_s']:,.0f}",
            f"{r['events_per_s']:,.0f}",
            f"{r['us_per_event']:.2f}",
            f"{r['cpu_us_per_event']:.2f}",
            f"{r['cpu_percent']:.0f}%",
        ]
        for r in results
    ]
    notes = [
        f"memory store and broker, no subscribers, {options.size}-byte padding per event; "
        f"{options.duration:g} s measured per phase after a warm-up"
        + ("; pinned to one core." if pinned else "; not pinned (fewer than 2 cores)."),
    ]
    if batch != options.batch:
        notes.append(f"batch capped at max_batch_size = {settings.max_batch_size}")
    return ModeReport(
        mode="inprocess",
        title="tidings bench --mode inprocess (Hub.publish, no server, no subscribers)",
        columns=[
            "call",
            "events/call",
            "calls",
            "calls/s",
            "events/s",
            "µs/event",
            "CPU µs/event",
            "CPU",
        ],
        rows=rows,
        data={
            "results": results,
            "pinned": pinned,
            "duration_s": options.duration,
            "size": options.size,
            "store": settings.store,
            "broker": settings.broker,
            "published_total": published,
        },
        notes=notes,
        # Warm-up events are published too: the hub must have stored at least these.
        ok=all(r["events"] > 0 for r in results) and published >= expected,
    )
