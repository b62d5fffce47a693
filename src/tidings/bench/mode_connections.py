"""``tidings bench --mode connections``: N concurrent WebSocket connections on one process.

The open-files limit of this process is raised as far as its hard limit allows (the
server inherits it); ``tidings serve`` starts pinned to one core with its connection
limits lifted for N. N subscribers (:mod:`tidings.bench.wsload`) then connect to one
channel, a bounded number of handshakes at a time, and the run waits until each is
subscribed, refused or failed (bounded by ``connect_timeout``). After a second of quiet
the server's RSS is read again. Then a few probe events are published over HTTP, one at
a time, each once the previous one reached everybody (or nothing arrived for
``drain_timeout``), and the run counts how many connections received each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from typing import Any

import httpx

from tidings.bench import procstat
from tidings.bench.common import (
    ModeOptions,
    ModeReport,
    Progress,
    open_files_limit,
    percentiles_ms,
    serve,
)
from tidings.bench.targets import TARGETS
from tidings.bench.wsload import Census, Subscriber, open_subscriber

__all__ = ["run_connections"]

CHANNEL = "bench-connections"
PATH = f"/ws?channel={CHANNEL}"
#: File descriptors beyond one per connection: the interpreter, the listener, logs.
FD_MARGIN = 1024


async def _connect_all(
    census: Census, port: int, options: ModeOptions, progress: Progress
) -> tuple[list[Subscriber], float]:
    """Connect ``options.subscribers``; the subscribers and the seconds until the last
    one settled."""
    total = options.subscribers
    gate = asyncio.Semaphore(options.connect_concurrency)
    subscribers: list[Subscriber] = []
    per_connection = min(30.0, options.connect_timeout)

    async def one() -> None:
        async with gate:
            subscriber = await open_subscriber(census, port, PATH, within=per_connection)
        if subscriber is not None:
            subscribers.append(subscriber)

    start = time.perf_counter()
    last_settled, settled_at = 0, start
    tasks = [asyncio.create_task(one()) for _ in range(total)]
    while True:
        if census.settled != last_settled:
            last_settled, settled_at = census.settled, time.perf_counter()
        progress("connecting", census.settled, total)
        if all(task.done() for task in tasks):
            break
        if time.perf_counter() - start > options.connect_timeout:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            missing = total - census.settled
            census.failed += missing
            census.error(f"{missing} not settled within --connect-timeout")
            break
        await asyncio.sleep(0.1)
    progress("connecting", census.settled, total)
    return subscribers, settled_at - start


async def _probe(
    client: httpx.AsyncClient, census: Census, probe: int, options: ModeOptions
) -> dict[str, Any]:
    """Publish probe ``probe`` and wait until every connected subscriber has it."""
    expected = census.ready
    sent_ns = time.time_ns()
    started = time.perf_counter()
    status = 0
    with contextlib.suppress(httpx.HTTPError):
        response = await client.post(
            "/api/v1/publish",
            json={"channel": CHANNEL, "type": "probe", "data": {"probe": probe, "t": sent_ns}},
        )
        status = response.status_code
    publish_ms = (time.perf_counter() - started) * 1000
    last_count, last_change = -1, time.monotonic()
    while True:
        count = census.received.get(probe, 0)
        if count >= expected or status != 201:
            break
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > options.drain_timeout:
            break
        await asyncio.sleep(0.01)
    received = census.received.get(probe, 0)
    last = census.last_receive_ns.get(probe)
    return {
        "probe": probe,
        "publish_status": status,
        "publish_ms": publish_ms,
        "expected": expected,
        "received": received,
        "all_received": received >= expected and status == 201,
        "ms_to_last_delivery": (last - sent_ns) / 1e6 if last is not None else None,
    }


async def run_connections(options: ModeOptions, progress: Progress) -> ModeReport:
    """Open ``options.subscribers`` connections, then check each receives every probe."""
    total = options.subscribers
    needed = total + FD_MARGIN
    soft = procstat.raise_open_files(needed)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    notes: list[str] = []
    if soft < needed:
        notes.append(
            f"open-files limit is {soft} (hard limit {hard}), below the {needed} that "
            f"{total:,} connections need: expect failed connections (raise `ulimit -Hn`)."
        )
    census = Census()
    subscribers: list[Subscriber] = []
    probes: list[dict[str, Any]] = []
    try:
        async with serve(TARGETS["tidings"], subscribers=total) as served:
            server_files = open_files_limit(served.pid)
            if server_files is not None and server_files < needed:
                notes.append(f"the server's open-files limit is {server_files} (< {needed}).")
            rss_before = procstat.rss_bytes(served.pid)
            own_rss_before = procstat.rss_bytes(os.getpid())
            cpu_before, _ = procstat.cpu_seconds(served.pid)
            subscribers, connect_s = await _connect_all(census, served.port, options, progress)
            cpu_connected, _ = procstat.cpu_seconds(served.pid)
            await asyncio.sleep(1.0)
            rss_after = procstat.rss_bytes(served.pid)
            own_rss_after = procstat.rss_bytes(os.getpid())
            connected = census.ready
            own_cpu = time.process_time()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{served.port}", timeout=30
            ) as client:
                for probe in range(options.events):
                    progress("publishing", probe, options.events)
                    probes.append(await _probe(client, census, probe, options))
            own_cpu = time.process_time() - own_cpu
            cpu_after, method = procstat.cpu_seconds(served.pid)
            pinned = served.pinned
            _close_all(census, subscribers)
    finally:
        _close_all(census, subscribers)
    deliveries = sum(p["received"] for p in probes)
    result: dict[str, Any] = {
        "subscribers": total,
        "connected": connected,
        "refused": census.refused,
        "failed": census.failed,
        "lost": census.lost,
        "connect_s": connect_s,
        "connects_per_s": connected / connect_s if connect_s > 0 else 0.0,
        "connect_ms": percentiles_ms(census.connect_ns),
        "connect_concurrency": options.connect_concurrency,
        "server_cpu_us_per_connection": (cpu_connected - cpu_before) * 1e6 / connected
        if connected
        else 0.0,
        "server_rss_before_bytes": rss_before,
        "server_rss_after_bytes": rss_after,
        "server_rss_per_connection_bytes": (rss_after - rss_before) / connected
        if connected
        else 0.0,
        "loadgen_rss_per_connection_bytes": (own_rss_after - own_rss_before) / connected
        if connected
        else 0.0,
        "open_files": {"needed": needed, "soft": soft, "hard": hard, "server": server_files},
        "probes": probes,
        "deliveries": deliveries,
        "delivery_latency_ms": percentiles_ms(census.latencies_ns),
        "server_cpu_us_per_delivery": (cpu_after - cpu_connected) * 1e6 / deliveries
        if deliveries
        else 0.0,
        "cpu_method": method,
        "loadgen_cpu_s_publishing": own_cpu,
        "loadgen_cpu_us_per_delivery": own_cpu * 1e6 / deliveries if deliveries else 0.0,
        "pinned": pinned,
        "errors": list(census.errors),
    }
    ok = (
        connected == total
        and census.refused == census.failed == census.lost == 0
        and bool(probes)
        and all(p["all_received"] for p in probes)
    )
    notes.extend(f"error: {error}" for error in result["errors"])
    return ModeReport(
        mode="connections",
        title=f"tidings bench --mode connections ({total:,} WebSocket connections)",
        columns=["figure", "value"],
        rows=_rows(result),
        data={"result": result},
        notes=notes,
        ok=ok,
        text_columns=2,
    )


def _close_all(census: Census, subscribers: list[Subscriber]) -> None:
    """Drop every connection before the server stops, so that no close counts as lost."""
    census.closing = True
    for subscriber in subscribers:
        subscriber.abort()


def _red(text: str, bad: bool) -> str:
    return f"[red]{text}[/red]" if bad else text


def _rows(r: dict[str, Any]) -> list[list[str]]:
    files = r["open_files"]
    rows = [
        [
            "connected / refused / failed",
            _red(
                f"{r['connected']:,} / {r['refused']:,} / {r['failed']:,} of {r['subscribers']:,}",
                r["connected"] != r["subscribers"],
            ),
        ],
        ["closed after subscribing", _red(f"{r['lost']:,}", r["lost"] > 0)],
        [
            "time to connect all",
            f"{r['connect_s']:.2f} s ({r['connects_per_s']:,.0f}/s, "
            f"{r['connect_concurrency']} handshakes at a time)",
        ],
        [
            "handshake → subscribed p50 / p99",
            f"{r['connect_ms']['p50']:.2f} / {r['connect_ms']['p99']:.2f} ms",
        ],
        ["server CPU per connection", f"{r['server_cpu_us_per_connection']:.0f} µs"],
        [
            "server RSS per connection",
            f"{r['server_rss_per_connection_bytes'] / 1024:.1f} KB "
            f"({r['server_rss_before_bytes'] / 2**20:.0f} → "
            f"{r['server_rss_after_bytes'] / 2**20:.0f} MB)",
        ],
        [
            "load generator RSS per connection",
            f"{r['loadgen_rss_per_connection_bytes'] / 1024:.1f} KB",
        ],
        [
            "open files: needed / soft / hard / server",
            f"{files['needed']:,} / {files['soft']:,} / {files['hard']:,} / "
            + (f"{files['server']:,}" if files["server"] is not None else "unknown"),
        ],
    ]
    for p in r["probes"]:
        reach = p["ms_to_last_delivery"]
        rows.append(
            [
                f"event {p['probe']}: received",
                _red(f"{p['received']:,}/{p['expected']:,}", not p["all_received"])
                + (f", last delivery after {reach:.1f} ms" if reach is not None else "")
                + f" (publish {p['publish_ms']:.1f} ms, HTTP {p['publish_status']})",
            ]
        )
    latency = r["delivery_latency_ms"]
    rows.append(
        [
            "publish → receive p50 / p99 / max",
            f"{latency['p50']:.1f} / {latency['p99']:.1f} / {latency['max']:.1f} ms",
        ]
    )
    rows.append(["server CPU per delivery", f"{r['server_cpu_us_per_delivery']:.2f} µs"])
    rows.append(["load generator CPU per delivery", f"{r['loadgen_cpu_us_per_delivery']:.2f} µs"])
    return rows
