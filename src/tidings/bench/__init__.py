"""``tidings bench``: fan-out throughput, latency, CPU and memory against baselines.

Starts each server under test as a subprocess on 127.0.0.1 pinned to one core, runs the
load generator on another, and measures what the issue's targets are stated in: server
CPU time per delivery, resident memory per idle connection, publish→receive latency,
publish latency. Linux only (it reads ``/proc``). Never used by the hub at run time.

This module runs the fan-out mode; the others (``--mode publish``, ``inprocess``,
``connections``, ``replay``) are run by :func:`tidings.bench.modes.run_mode`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tidings.bench.report import ratios, render_table, write_plot
from tidings.bench.run import BenchConfig, Result, machine, run_scenario
from tidings.bench.targets import TARGETS, unavailable_reason

__all__ = ["BenchConfig", "Result", "parse_list", "run_bench"]


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def run_bench(
    servers: list[str],
    transports: list[str],
    subscriber_counts: list[int],
    config: BenchConfig,
    *,
    json_output: bool = False,
    plot: str | None = None,
) -> int:
    """Run every (server, transport, N) scenario, print the results; the exit status."""
    if not sys.platform.startswith("linux"):
        Console(stderr=True).print("[red]tidings bench needs Linux (it reads /proc)[/red]")
        return 2
    err = Console(stderr=True)
    out = err if json_output else Console()
    for console in (err, out):
        if not console.is_terminal:  # keep the table readable in logs and CI
            console.width = max(console.width, 170)
    unknown = [name for name in servers if name not in TARGETS]
    if unknown or any(t not in ("ws", "sse") for t in transports):
        err.print(f"[red]unknown server or transport:[/red] {servers} {transports}")
        return 2
    results: list[Result] = []
    skipped: list[str] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        for transport in transports:
            for count in subscriber_counts:
                for name in servers:
                    target = TARGETS[name]
                    reason = unavailable_reason(target, transport)
                    if reason:
                        if reason not in skipped:
                            skipped.append(reason)
                            err.print(f"[yellow]skipped:[/yellow] {escape(reason)}")
                        continue
                    label = f"{name} {transport} N={count}"
                    task = bar.add_task(label, total=None)

                    def progress(
                        phase: str, done: int, total: int, task: Any = task, label: str = label
                    ) -> None:
                        bar.update(
                            task, description=f"{label} {phase}", completed=done, total=total
                        )

                    results.append(
                        asyncio.run(run_scenario(target, transport, count, config, progress))
                    )
                    bar.remove_task(task)
    render_table(results, out)
    if plot:
        problem = write_plot(results, plot)
        err.print(f"[yellow]{escape(problem)}[/yellow]" if problem else f"plot written to {plot}")
    if json_output:
        document = {
            "machine": machine(),
            "config": {
                "servers": servers,
                "transports": transports,
                "subscribers": subscriber_counts,
                "events": config.events,
                "rate": config.rate,
                "size": config.size,
            },
            "results": [r.as_dict() for r in results],
            "ratios": ratios(results),
            "skipped": skipped,
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if results else 1
