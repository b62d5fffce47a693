"""Webhook deliveries per second to a local receiver.

Starts ``tidings serve`` on 127.0.0.1 (memory store, then SQLite), a receiver in this
process that answers 200 at once, registers ``--endpoints`` endpoints, publishes
``--events`` events in batches of 500, and times from the first publish until the
receiver has every delivery (events x endpoints). The receiver shares this machine's
cores with the hub, as it would on one box.

    python -m benchmarks.webhook_throughput --events 5000 --endpoints 1
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from tests.servers import start_process
from tests.webhook_receiver import receiving


async def measure(args: tuple[str, ...], events: int, endpoints: int) -> float:
    node = start_process(*args, "--webhook-allow-private", "--log-level", "warning")
    try:
        async with receiving() as receiver, httpx.AsyncClient(timeout=60) as http:
            for n in range(endpoints):
                made = await http.post(
                    node.url + "/api/v1/webhooks", json={"url": receiver.url(f"/e{n}")}
                )
                made.raise_for_status()
            started = time.perf_counter()
            batch = [{"channel": "bench", "type": "t", "data": {"n": n}} for n in range(events)]
            for first in range(0, events, 500):
                answer = await http.post(
                    node.url + "/api/v1/publish", json={"events": batch[first : first + 500]}
                )
                answer.raise_for_status()
            total = events * endpoints
            await receiver.until(
                lambda: sum(len(v) for v in receiver.arrivals.values()) >= total, timeout=600
            )
            return total / (time.perf_counter() - started)
    finally:
        node.stop()
        node.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=1)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in (
            ("memory", ()),
            ("sqlite", ("--store", f"sqlite:///{Path(tmp) / 'bench.db'}")),
        ):
            rate = await measure(args, options.events, options.endpoints)
            print(
                f"{name:<8} {options.events} events x {options.endpoints} endpoint(s): "
                f"{rate:,.0f} deliveries/s"
            )


if __name__ == "__main__":
    asyncio.run(main())
