"""Run one benchmark scenario per (server, transport, subscriber count) and measure it.

The order inside a scenario is fixed so every figure means the same for every server:
start the server pinned to one core (the load generator is on another), read its RSS,
connect N idle subscribers and wait until each is subscribed, read RSS again, read its
CPU time, publish M events at R/s from a separate publisher process, wait until every
delivery arrived (or nothing arrived for ``drain_timeout``), read CPU time again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tidings.bench import procstat
from tidings.bench.load import Tally, subscribe
from tidings.bench.targets import CHANNEL, Target, baseline_root

__all__ = ["BenchConfig", "Progress", "Result", "machine", "quantile", "run_scenario"]

#: Called with (phase, done, total) while a scenario runs.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchConfig:
    events: int = 50
    rate: float = 20.0
    size: int = 100
    drain_timeout: float = 10.0
    connect_concurrency: int = 100


@dataclass
class Result:
    server: str
    transport: str
    subscribers: int
    events: int
    rate: float
    size: int
    pinned: bool
    connected: int
    connect_failures: int
    expected: int
    delivered: int
    loss: int
    loss_ratio: float
    deliveries_per_s: float
    latency_ms: dict[str, float]
    server_cpu_s: float
    cpu_us_per_delivery: float
    cpu_method: str
    rss_before_bytes: int
    rss_after_bytes: int
    rss_per_connection_bytes: float
    publish_ms: dict[str, float]
    publish_failures: int
    publish_rate_achieved: float
    loadgen_cpu_s: float
    loadgen_cpu_percent: float
    publisher_cpu_s: float
    duration_s: float
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, Python, kernel."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "usable_cores": len(procstat.USABLE_CORES),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cores() -> tuple[int, int] | None:
    """(server core, load-generator core) when there are at least two usable cores."""
    usable = procstat.USABLE_CORES  # not this process's affinity: it may be pinned already
    return (usable[0], usable[1]) if len(usable) >= 2 else None


@contextlib.contextmanager
def _server(target: Target, subscribers: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    root = baseline_root() if target.needs_checkout else None
    env = {**os.environ, **target.env}
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        target.command(port, subscribers),
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


async def _wait_healthy(
    process: subprocess.Popen[bytes],
    port: int,
    path: str,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
    output: Callable[[], str] | None = None,
) -> None:
    """Wait until ``path`` answers 200; raise with the server's last output (``output``,
    else its stderr pipe) if it exits first, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if output is not None:
                    err = output()
                else:
                    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"server exited with {process.returncode}: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}{path}")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server did not answer {path} within {timeout:g} s")


async def _publisher(target: Target, port: int, config: BenchConfig) -> asyncio.subprocess.Process:
    endpoint: tuple[str, ...] = ()
    if target.publish_template is not None:
        endpoint = (target.health_path, target.publish_path, target.publish_template)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.bench.publisher",
        f"http://127.0.0.1:{port}",
        CHANNEL,
        str(config.events),
        str(config.rate),
        str(config.size),
        *endpoint,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"the publisher did not start: {line!r}")
    return process


async def run_scenario(
    target: Target,
    transport: str,
    subscribers: int,
    config: BenchConfig,
    progress: Progress,
) -> Result:
    pair = cores()
    procstat.raise_open_files(subscribers + 1024)
    if pair:
        procstat.pin(0, pair[1])
    with _server(target, subscribers) as (process, port):
        if pair:
            procstat.pin(process.pid, pair[0])
        await _wait_healthy(process, port, target.health_path)
        if pair:  # threads the server started while booting
            procstat.pin(process.pid, pair[0])
        async with httpx.AsyncClient(timeout=10) as client:  # warm the publish path
            if target.publish_template is None:
                warmup = orjson.dumps({"channel": "warmup", "data": None})
            else:  # the application's own endpoint (nobody is subscribed yet)
                warmup = target.publish_template.replace('"$data"', "{}").encode()
            await client.post(
                f"http://127.0.0.1:{port}{target.publish_path}",
                content=warmup,
                headers={"content-type": "application/json"},
            )
        publisher = await _publisher(target, port, config)
        await asyncio.sleep(0.3)
        rss_before = procstat.rss_bytes(process.pid)

        tally = Tally()
        connecting = asyncio.Semaphore(config.connect_concurrency)
        tasks = [
            asyncio.create_task(subscribe(target, transport, port, tally, connecting))
            for _ in range(subscribers)
        ]
        try:
            while tally.ready + tally.failed < subscribers:
                progress("connecting", tally.ready + tally.failed, subscribers)
                await asyncio.sleep(0.1)
            progress("connecting", subscribers, subscribers)
            await asyncio.sleep(0.5)
            rss_after = procstat.rss_bytes(process.pid)
            connected = tally.ready

            expected = connected * config.events
            cpu_before, method = procstat.cpu_seconds(process.pid)
            own_before = time.process_time()
            started_ns = time.time_ns()
            assert publisher.stdin is not None and publisher.stdout is not None
            publisher.stdin.write(b"go\n")
            await publisher.stdin.drain()
            result_line = asyncio.ensure_future(publisher.stdout.readline())
            last_count, last_change = -1, time.monotonic()
            while True:
                progress("delivering", tally.delivered, expected)
                if tally.delivered != last_count:
                    last_count, last_change = tally.delivered, time.monotonic()
                if result_line.done() and (
                    tally.delivered >= expected
                    or time.monotonic() - last_change > config.drain_timeout
                ):
                    break
                await asyncio.sleep(0.05)
            progress("delivering", tally.delivered, expected)
            cpu_after, _ = procstat.cpu_seconds(process.pid)
            own_cpu = time.process_time() - own_before
            end_ns = max(tally.last_delivery_ns, started_ns + 1)
            published = orjson.loads(await result_line)
            await publisher.wait()
        finally:
            if publisher.returncode is None:
                publisher.kill()
                await publisher.wait()
            process.terminate()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    wall = (end_ns - started_ns) / 1e9
    server_cpu = cpu_after - cpu_before
    delivered = tally.delivered
    latencies = [ns / 1e6 for ns in tally.latencies_ns]
    publish_ms: list[float] = published["latencies_ms"]
    return Result(
        server=target.name,
        transport=transport,
        subscribers=subscribers,
        events=config.events,
        rate=config.rate,
        size=config.size,
        pinned=pair is not None,
        connected=connected,
        connect_failures=tally.failed,
        expected=expected,
        delivered=delivered,
        loss=max(0, expected - delivered),
        loss_ratio=(max(0, expected - delivered) / expected) if expected else 0.0,
        deliveries_per_s=delivered / wall if wall > 0 else 0.0,
        latency_ms={
            "p50": quantile(latencies, 0.5),
            "p90": quantile(latencies, 0.9),
            "p99": quantile(latencies, 0.99),
            "max": max(latencies, default=0.0),
        },
        server_cpu_s=server_cpu,
        cpu_us_per_delivery=server_cpu * 1e6 / delivered if delivered else 0.0,
        cpu_method=method,
        rss_before_bytes=rss_before,
        rss_after_bytes=rss_after,
        rss_per_connection_bytes=(rss_after - rss_before) / connected if connected else 0.0,
        publish_ms={"p50": quantile(publish_ms, 0.5), "p99": quantile(publish_ms, 0.99)},
        publish_failures=published["failures"],
        publish_rate_achieved=config.events / published["wall_s"] if published["wall_s"] else 0,
        loadgen_cpu_s=own_cpu,
        loadgen_cpu_percent=100 * own_cpu / wall if wall > 0 else 0.0,
        publisher_cpu_s=published["cpu_s"],
        duration_s=wall,
        errors=tally.errors,
    )
