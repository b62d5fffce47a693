"""Run one of the measurement modes of ``tidings bench`` besides fan-out, and present it.

Each mode is a coroutine ``(ModeOptions, Progress) -> ModeReport``; this module gives it
a progress bar, prints its table (stderr when ``--json`` is given, stdout otherwise)
and the JSON document, and turns its verdict into the exit status. It never measures.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidings.bench.common import ModeOptions, ModeReport
from tidings.bench.common import Progress as ProgressCallback
from tidings.bench.run import machine

__all__ = ["MODES", "render_report", "run_mode"]

ModeRunner = Callable[[ModeOptions, ProgressCallback], Coroutine[Any, Any, ModeReport]]

#: Every mode ``--mode`` takes; ``fanout`` is :func:`tidings.bench.run_bench`.
MODES = ("fanout", "publish", "inprocess", "connections", "replay", "chaos")


def _runner(mode: str) -> ModeRunner:
    # Imported on demand: each mode pulls in what it alone needs (the hub, a WS client).
    if mode == "publish":
        from tidings.bench.mode_publish import run_publish

        return run_publish
    if mode == "inprocess":
        from tidings.bench.mode_inprocess import run_inprocess

        return run_inprocess
    if mode == "connections":
        from tidings.bench.mode_connections import run_connections

        return run_connections
    if mode == "replay":
        from tidings.bench.mode_replay import run_replay

        return run_replay
    if mode == "chaos":
        from tidings.bench.mode_chaos import run_chaos

        return run_chaos
    raise ValueError(f"unknown mode {mode!r}")


def render_report(report: ModeReport, console: Console) -> None:
    """The mode's table, then its notes."""
    table = Table(title=report.title, header_style="bold")
    for index, name in enumerate(report.columns):
        table.add_column(name, justify="left" if index < report.text_columns else "right")
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    for note in report.notes:
        console.print(escape(note))
    if not report.ok:
        console.print("[red]FAILED:[/red] see the red cells and the notes above")


def run_mode(mode: str, options: ModeOptions, *, json_output: bool = False) -> int:
    """Run ``mode`` and print its results; the exit status (1 when the run failed)."""
    err = Console(stderr=True)
    if mode != "inprocess" and not sys.platform.startswith("linux"):
        err.print("[red]tidings bench needs Linux (it reads /proc)[/red]")
        return 2
    out = err if json_output else Console()
    for console in (err, out):
        if not console.is_terminal:  # keep the table readable in logs and CI
            console.width = max(console.width, 170)
    runner = _runner(mode)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[figure]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(mode, total=None, figure="")

        def progress(phase: str, done: float, total: float, unit: str = "") -> None:
            figure = f"{done:.1f}/{total:g} s" if unit == "s" else f"{done:,.0f}/{total:,.0f}"
            bar.update(task, description=phase, completed=done, total=total, figure=figure)

        try:
            report = asyncio.run(runner(options, progress))
        except (OSError, RuntimeError, TimeoutError, httpx.HTTPError) as exc:
            # A server that would not start, a resume that went wrong: say it, no trace.
            err.print(f"[red]tidings bench --mode {mode} failed:[/red] {escape(str(exc))}")
            return 1
    render_report(report, out)
    if json_output:
        document: dict[str, Any] = {
            "mode": mode,
            "machine": machine(),
            "ok": report.ok,
            **report.data,
            "notes": report.notes,
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if report.ok else 1
