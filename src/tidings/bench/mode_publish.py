"""``tidings bench --mode publish``: HTTP publish throughput with no subscribers.

Each server runs as a subprocess pinned to one core; this process, pinned to another,
drives it with :mod:`tidings.bench.httpload` (several keep-alive connections, one
request in flight on each). Per server, a phase of single-event ``POST``s, then, where
the server has a batch endpoint (tidings), a phase of batches; each phase starts a fresh
server (no history or allocator state carried over), has a short unmeasured warm-up,
then ``duration`` measured seconds. The server's CPU clock is read
at both ends of the measured window. Ratios are against the first other server given
(by default the hand-rolled FastAPI app, whose single-event publish route is the same
shape as tidings').
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tidings.bench import procstat
from tidings.bench.common import ModeOptions, ModeReport, Progress, percentiles_ms, serve
from tidings.bench.httpload import LoadGenerator, LoadSnapshot, build_post, run_window
from tidings.bench.targets import TARGETS, unavailable_reason

__all__ = ["BATCH_SERVERS", "run_publish"]

#: Servers whose ``/api/v1/publish`` takes ``{"events": [...]}``.
BATCH_SERVERS = frozenset({"tidings"})
CHANNEL = "bench-publish"
PATH = "/api/v1/publish"


def _bodies(options: ModeOptions) -> dict[str, bytes]:
    event = {"channel": CHANNEL, "type": "bench", "data": {"pad": "x" * options.size}}
    return {
        "single": orjson.dumps(event),
        "batch": orjson.dumps({"events": [event] * options.batch}),
    }


async def _phase(
    server: str,
    kind: str,
    body: bytes,
    events_per_request: int,
    options: ModeOptions,
    progress: Progress,
) -> dict[str, Any]:
    async with serve(TARGETS[server]) as served:
        generator = LoadGenerator(
            "127.0.0.1",
            served.port,
            build_post("127.0.0.1", served.port, PATH, body),
            connections=options.connections,
        )
        await generator.open()
        marks: dict[bool, tuple[float, float]] = {}

        def on_window(opening: bool) -> None:
            cpu, _ = procstat.cpu_seconds(served.pid)
            marks[opening] = (cpu, time.process_time())

        label = f"{server} {kind}"
        snapshot = await run_window(
            generator,
            warmup=min(1.0, max(0.2, options.duration / 5)),
            duration=options.duration,
            on_window=on_window,
            progress=lambda done, total: progress(label, done, total, "s"),
        )
        rss = procstat.rss_bytes(served.pid)
    server_cpu = marks[False][0] - marks[True][0]
    own_cpu = marks[False][1] - marks[True][1]
    return _row(server, kind, events_per_request, snapshot, server_cpu, own_cpu, rss, served.pinned)


def _row(
    server: str,
    kind: str,
    events_per_request: int,
    snapshot: LoadSnapshot,
    server_cpu: float,
    own_cpu: float,
    rss: int,
    pinned: bool,
) -> dict[str, Any]:
    wall = snapshot.wall_s
    requests = snapshot.requests
    events = snapshot.ok * events_per_request
    return {
        "server": server,
        "kind": kind,
        "events_per_request": events_per_request,
        "pinned": pinned,
        "requests": requests,
        "ok": snapshot.ok,
        "failed": requests - snapshot.ok,
        "statuses": {str(status): count for status, count in sorted(snapshot.statuses.items())},
        "requests_per_s": requests / wall if wall > 0 else 0.0,
        "events_per_s": events / wall if wall > 0 else 0.0,
        "latency_ms": percentiles_ms(snapshot.latencies_ns),
        "server_cpu_s": server_cpu,
        "server_cpu_percent": 100 * server_cpu / wall if wall > 0 else 0.0,
        "cpu_us_per_request": server_cpu * 1e6 / requests if requests else 0.0,
        "cpu_us_per_event": server_cpu * 1e6 / events if events else 0.0,
        "loadgen_cpu_percent": 100 * own_cpu / wall if wall > 0 else 0.0,
        "server_rss_bytes": rss,
        "wall_s": wall,
        "errors": snapshot.errors,
    }


def _ratios(results: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    base = next((r for r in results if r["server"] == baseline and r["kind"] == "single"), None)
    if base is None:
        return []
    out = []
    for r in results:
        if r["server"] == baseline:
            continue
        out.append(
            {
                "server": r["server"],
                "kind": r["kind"],
                "baseline": f"{baseline} single",
                "events_per_s": _ratio(r["events_per_s"], base["events_per_s"]),
                "cpu_us_per_event": _ratio(r["cpu_us_per_event"], base["cpu_us_per_event"]),
            }
        )
    return out


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if theirs > 0 else None


async def run_publish(options: ModeOptions, progress: Progress) -> ModeReport:
    """Measure every server of ``options.servers``; ratios against the first other one."""
    bodies = _bodies(options)
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    for server in options.servers:
        target = TARGETS[server]
        reason = unavailable_reason(target, next(iter(target.paths)))
        if reason:
            notes.append(f"skipped: {reason}")
            continue
        phases = [("single", bodies["single"], 1)]
        if server in BATCH_SERVERS:
            phases.append((f"batch {options.batch}", bodies["batch"], options.batch))
        else:
            notes.append(f"{server} has no batch endpoint: single events only")
        for kind, body, per_request in phases:
            results.append(await _phase(server, kind, body, per_request, options, progress))
    measured = [r["server"] for r in results]
    baseline = next((s for s in measured if s != (measured[0] if measured else None)), None)
    ratios = _ratios(results, baseline)
    by_key = {(r["server"], r["kind"]): r for r in ratios}
    rows = []
    for r in results:
        ratio = by_key.get((r["server"], r["kind"]))
        events_cell = f"{r['events_per_s']:,.0f}"
        cpu_cell = f"{r['cpu_us_per_event']:.1f}"
        if ratio and ratio["events_per_s"] is not None:
            events_cell += f" ({ratio['events_per_s']:.2f}x)"
        if ratio and ratio["cpu_us_per_event"] is not None:
            cpu_cell += f" ({ratio['cpu_us_per_event']:.2f}x)"
        failed = f"{r['failed']}" if not r["failed"] else f"[red]{r['failed']}[/red]"
        rows.append(
            [
                r["server"],
                r["kind"],
                f"{r['requests']:,}",
                failed,
                f"{r['requests_per_s']:,.0f}",
                events_cell,
                f"{r['latency_ms']['p50']:.2f}",
                f"{r['latency_ms']['p99']:.2f}",
                f"{r['cpu_us_per_request']:.1f}",
                cpu_cell,
                f"{r['server_cpu_percent']:.0f}%",
                f"{r['loadgen_cpu_percent']:.0f}%",
            ]
        )
    if baseline:
        notes.append(
            f"(x) = ratio to {baseline}'s single-event figure in the same run "
            "(events/s: higher is better; CPU µs/event: lower is better)."
        )
    notes.append(
        f"{options.connections} keep-alive connections, one request in flight each; "
        f"{options.duration:g} s measured per phase after a warm-up."
    )
    for r in results:
        notes.extend(f"{r['server']} {r['kind']}: {error}" for error in r["errors"])
    return ModeReport(
        mode="publish",
        title="tidings bench --mode publish (HTTP publish, no subscribers)",
        columns=[
            "server",
            "kind",
            "requests",
            "failed",
            "req/s",
            "events/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "CPU µs/event",
            "server CPU",
            "loadgen CPU",
        ],
        rows=rows,
        data={
            "results": results,
            "ratios": ratios,
            "baseline": baseline,
            "connections": options.connections,
            "duration_s": options.duration,
            "batch": options.batch,
            "size": options.size,
        },
        notes=notes,
        text_columns=2,
        ok=bool(results) and all(r["failed"] == 0 and r["ok"] > 0 for r in results),
    )
