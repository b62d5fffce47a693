"""The benchmark's publisher, run as its own process so fan-out in the subscribers'
event loop never delays a publish or its timing.

``python -m tidings.bench.publisher URL CHANNEL EVENTS RATE SIZE`` prints ``ready``,
waits for a line on stdin, publishes ``EVENTS`` events at ``RATE`` per second over one
keep-alive HTTP connection (each stamped with ``time.time_ns()`` at send), and prints
one JSON line: publish latencies (ms), failures, wall and CPU seconds.
"""

from __future__ import annotations

import sys
import time

import httpx
import orjson

__all__ = ["publish_events"]


def publish_events(
    url: str, channel: str, events: int, rate: float, size: int
) -> dict[str, object]:
    latencies: list[float] = []
    failures = 0
    padding = "x" * size
    interval = 1.0 / rate if rate > 0 else 0.0
    cpu_start = time.process_time()
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/health")  # open the connection before the clock starts
        start = time.perf_counter()
        for seq in range(events):
            due = start + seq * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            body = {"channel": channel, "type": "bench", "data": {"seq": seq, "pad": padding}}
            sent = time.perf_counter()
            body["data"]["t"] = time.time_ns()  # type: ignore[index]
            try:
                response = client.post(
                    "/api/v1/publish",
                    content=orjson.dumps(body),
                    headers={"content-type": "application/json"},
                )
                ok = response.status_code in (200, 201)
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - sent) * 1000)
            failures += not ok
        wall = time.perf_counter() - start
    return {
        "latencies_ms": latencies,
        "failures": failures,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu_start,
    }


def main() -> None:
    url, channel, events, rate, size = sys.argv[1:6]
    print("ready", flush=True)
    sys.stdin.readline()
    result = publish_events(url, channel, int(events), float(rate), int(size))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
