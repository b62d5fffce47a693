"""Publish-to-receive latency: memory broker vs Redis, same node vs across nodes.

Starts real ``tidings serve`` processes on 127.0.0.1, one subscriber over WebSocket,
and publishes events one at a time over HTTP (waiting for each to arrive), so every
sample is one event's full path: HTTP publish, store append, broker, fan-out, socket.
All three setups are measured in the same run, so the figures compare.

    python -m benchmarks.cross_node_latency --events 2000 --redis redis://127.0.0.1:6379/15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Iterator

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


async def measure(publish_url: str, receive_url: str, events: int, warmup: int) -> list[float]:
    samples: list[float] = []
    ws_url = receive_url.replace("http", "ws") + "/ws?channel=bench"
    async with websockets.connect(ws_url) as ws, httpx.AsyncClient(timeout=10) as http:
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        for n in range(warmup + events):
            sent = time.perf_counter()
            response = await http.post(
                publish_url + "/api/v1/publish", json={"channel": "bench", "data": n}
            )
            response.raise_for_status()
            while json.loads(await ws.recv())["type"] != "event":
                pass
            if n >= warmup:
                samples.append((time.perf_counter() - sent) * 1000)
    return samples


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    redis = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix=bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, list[float]] = {}
    with serving() as node:
        results["memory broker, one node"] = await measure(
            node.url, node.url, args.events, args.warmup
        )
    with (
        serving("--broker", redis, "--store", redis) as a,
        serving("--broker", redis, "--store", redis) as b,
    ):
        results["redis, same node"] = await measure(a.url, a.url, args.events, args.warmup)
        results["redis, across nodes"] = await measure(a.url, b.url, args.events, args.warmup)
    base = results["memory broker, one node"]
    print(f"{args.events} events each, after {args.warmup} warm-up; latency in ms")
    print(f"{'setup':<26}{'p50':>8}{'p99':>8}{'mean':>8}{'p50 +':>9}{'p99 +':>9}{'p50 x':>8}")
    for name, samples in results.items():
        p50, p99 = quantile(samples, 0.5), quantile(samples, 0.99)
        print(
            f"{name:<26}{p50:>8.2f}{p99:>8.2f}{statistics.fmean(samples):>8.2f}"
            f"{p50 - quantile(base, 0.5):>9.2f}{p99 - quantile(base, 0.99):>9.2f}"
            f"{p50 / quantile(base, 0.5):>8.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
