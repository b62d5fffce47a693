"""The benchmark's publisher, run as its own process so fan-out in the subscribers'
event loop never delays a publish or its timing.

``python -m tidings.bench.publisher URL CHANNEL EVENTS RATE SIZE [HEALTH PATH TEMPLATE]``
prints ``ready``, waits for a line on stdin, publishes ``EVENTS`` events at ``RATE`` per
second over one keep-alive HTTP connection (each stamped with ``time.time_ns()`` at
send), and prints one JSON line: publish latencies (ms), failures, wall and CPU seconds.
By default it POSTs ``/api/v1/publish`` (after a ``GET /health``); an application's own
endpoint is given as ``PATH`` with a body ``TEMPLATE`` whose string ``"$data"`` is
replaced by each event's data (see ``Target.publish_template``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import orjson

__all__ = ["publish_events"]


DATA = b'"$data"'


def body_maker(channel: str, template: str | None) -> Any:
    """A function from an event's data to the request body."""
    if template is None:
        return lambda data: orjson.dumps({"channel": channel, "type": "bench", "data": data})
    head, found, tail = template.encode().partition(DATA)
    if not found:
        raise ValueError(f"the publish template has no {DATA.decode()}: {template}")
    return lambda data: head + orjson.dumps(data) + tail


def publish_events(
    url: str,
    channel: str,
    events: int,
    rate: float,
    size: int,
    *,
    health_path: str = "/health",
    publish_path: str = "/api/v1/publish",
    template: str | None = None,
) -> dict[str, object]:
    latencies: list[float] = []
    failures = 0
    padding = "x" * size
    interval = 1.0 / rate if rate > 0 else 0.0
    make_body = body_maker(channel, template)
    cpu_start = time.process_time()
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get(health_path)  # open the connection before the clock starts
        start = time.perf_counter()
        for seq in range(events):
            due = start + seq * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            data: dict[str, Any] = {"seq": seq, "pad": padding}
            sent = time.perf_counter()
            data["t"] = time.time_ns()
            try:
                response = client.post(
                    publish_path,
                    content=make_body(data),
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
    endpoint: dict[str, Any] = {}
    if len(sys.argv) > 6:
        health_path, publish_path, template = sys.argv[6:9]
        endpoint = {"health_path": health_path, "publish_path": publish_path}
        endpoint["template"] = template
    print("ready", flush=True)
    sys.stdin.readline()
    result = publish_events(url, channel, int(events), float(rate), int(size), **endpoint)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
