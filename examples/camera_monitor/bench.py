"""Broadcast latency of the camera monitor to N dashboards, with ``tidings bench``.

The monitor runs under uvicorn as its README runs it; the bench's publisher creates events
through ``POST /api/events`` (so every figure includes the SQLite insert and the hand-off
from FastAPI's worker thread to the hub), N subscribers follow ``/ws/events``, and each
latency is from just before the POST to the arrival of the event in a subscriber. The
hand-rolled FastAPI "dict of sockets" (``benchmarks/handrolled.py``) runs in the same run
as the baseline; ratios are against the monitor.

From the repository root::

    python -m examples.camera_monitor.bench                 # N=100, 50 events at 20/s
    python -m examples.camera_monitor.bench --subscribers 100,1000 --events 100
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tidings.bench import BenchConfig, parse_list, run_bench
from tidings.bench.targets import TARGETS, Target


def camera_monitor(db_path: Path) -> Target:
    return Target(
        name="camera_monitor",
        module=("uvicorn", "examples.camera_monitor.app:app"),
        extra_args=("--log-level", "warning"),
        env={"MONITOR_DB": str(db_path)},
        paths={"ws": "/ws/events"},
        ready_marker={"ws": b'"subscribed"'},
        needs_checkout=True,  # started from the repository root, where examples/ is
        health_path="/realtime/health",
        publish_path="/api/events",
        publish_template='{"camera_id": "bench", "label": "bench", "confidence": 1,'
        ' "details": "$data"}',
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="100")
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--baseline", default="handrolled", help="'' for none")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        TARGETS["camera_monitor"] = camera_monitor(Path(tmp) / "events.db")
        return run_bench(
            ["camera_monitor", *parse_list(args.baseline)],
            ["ws"],
            [int(n) for n in parse_list(args.subscribers)],
            BenchConfig(events=args.events, rate=args.rate),
            json_output=args.json,
        )


if __name__ == "__main__":
    raise SystemExit(main())
