"""How late scheduled events fire: due time to arrival at a subscriber.

Starts real ``tidings serve`` processes on 127.0.0.1 (memory store, SQLite store, and
Redis when given), one WebSocket subscriber each, and schedules ``--events`` events at
random times over the next ``--spread`` seconds through the HTTP API, while a background
publisher keeps ``--load`` ordinary events per second flowing (normal load). Each sample
is arrival time minus the event's due time, both on this machine's clock. The setups run
one after another in the same run, so their figures compare.

    python -m benchmarks.scheduled_latency --events 500 --spread 10 --load 200 \\
        --redis redis://127.0.0.1:6379/15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import websockets

from tests.servers import HubProcess, start_process


@contextlib.contextmanager
def serving(*args: str) -> Iterator[HubProcess]:
    node = start_process(*args, "--log-level", "warning")
    try:
        yield node
    finally:
        node.stop()
        node.close()


async def measure(node: HubProcess, events: int, spread: float, load: float) -> list[float]:
    ws_url = node.url.replace("http", "ws") + "/ws?channel=due&channel=load"
    late: list[float] = []
    async with websockets.connect(ws_url, max_queue=None) as ws, httpx.AsyncClient() as http:
        async with asyncio.timeout(5):
            subscribed = 0
            while subscribed < 2:
                subscribed += json.loads(await ws.recv())["type"] == "subscribed"
        start = time.time() + 1.0
        times = sorted(start + random.random() * spread for _ in range(events))
        batch = [{"channel": "due", "type": "due", "data": at, "at": _rfc3339(at)} for at in times]
        for first in range(0, len(batch), 500):
            answer = await http.post(
                node.url + "/api/v1/publish", json={"events": batch[first : first + 500]}
            )
            answer.raise_for_status()

        async def background() -> None:
            while True:
                await http.post(node.url + "/api/v1/publish", json={"channel": "load", "data": 0})
                await asyncio.sleep(1 / load)

        loader = asyncio.create_task(background()) if load > 0 else None
        try:
            async with asyncio.timeout(spread + 30):
                while len(late) < events:
                    message = json.loads(await ws.recv())
                    if message["type"] == "event" and message["data"]["channel"] == "due":
                        late.append(time.time() - float(message["data"]["data"]))
        finally:
            if loader is not None:
                loader.cancel()
    return late


def _rfc3339(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def report(name: str, late: list[float]) -> None:
    ms = sorted(x * 1000 for x in late)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{name:<10} n={len(ms):<5} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {ms[-1]:7.1f} ms"
        f"   early {sum(1 for x in ms if x < -2)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--spread", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=200.0, help="background publishes/s")
    parser.add_argument("--redis", default=None, help="also measure over this Redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setups: list[tuple[str, tuple[str, ...]]] = [
            ("memory", ()),
            ("sqlite", ("--store", f"sqlite:///{Path(tmp) / 'bench.db'}")),
        ]
        if args.redis:
            url = f"{args.redis}?prefix=bench-{uuid.uuid4().hex[:8]}"
            setups.append(("redis", ("--store", url, "--broker", url)))
        for name, extra in setups:
            with serving(*extra) as node:
                report(name, await measure(node, args.events, args.spread, args.load))


if __name__ == "__main__":
    asyncio.run(main())
