"""Present benchmark results: a rich table, ratios against the first server, JSON, a chart."""

from __future__ import annotations

import importlib
from typing import Any

from rich.console import Console
from rich.table import Table

from tidings.bench.run import Result

__all__ = ["ratios", "render_table", "write_plot"]


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    """Each result against the first server's result for the same transport and N."""
    out: list[dict[str, Any]] = []
    first: dict[tuple[str, int], Result] = {}
    for result in results:
        key = (result.transport, result.subscribers)
        base = first.setdefault(key, result)
        if base is result:
            continue

        def ratio(ours: float, theirs: float) -> float | None:
            return round(ours / theirs, 3) if theirs > 0 else None

        out.append(
            {
                "server": result.server,
                "baseline": base.server,
                "transport": result.transport,
                "subscribers": result.subscribers,
                "cpu_us_per_delivery": ratio(result.cpu_us_per_delivery, base.cpu_us_per_delivery),
                "rss_per_connection": ratio(
                    result.rss_per_connection_bytes, base.rss_per_connection_bytes
                ),
                "latency_p99": ratio(result.latency_ms["p99"], base.latency_ms["p99"]),
            }
        )
    return out


def render_table(results: list[Result], console: Console) -> None:
    by_key = {(r["server"], r["transport"], r["subscribers"]): r for r in ratios(results)}
    table = Table(title="tidings bench", header_style="bold")
    for name in (
        "server",
        "transport",
        "N",
        "delivered",
        "deliv/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "CPU µs/deliv",
        "RSS KB/conn",
        "publish p50/p99 ms",
        "loadgen CPU",
    ):
        table.add_column(name, justify="left" if name in ("server", "transport") else "right")
    for r in results:
        ratio = by_key.get((r.server, r.transport, r.subscribers))
        cpu = f"{r.cpu_us_per_delivery:.1f}"
        rss = f"{r.rss_per_connection_bytes / 1024:.1f}"
        if ratio:
            if ratio["cpu_us_per_delivery"] is not None:
                cpu += f" ({ratio['cpu_us_per_delivery']:.2f}x)"
            if ratio["rss_per_connection"] is not None:
                rss += f" ({ratio['rss_per_connection']:.2f}x)"
        delivered = f"{r.delivered}/{r.expected}"
        if r.loss or r.connect_failures:
            delivered = f"[red]{delivered}[/red]"
        table.add_row(
            r.server,
            r.transport,
            str(r.subscribers),
            delivered,
            f"{r.deliveries_per_s:,.0f}",
            f"{r.latency_ms['p50']:.2f}",
            f"{r.latency_ms['p90']:.2f}",
            f"{r.latency_ms['p99']:.2f}",
            f"{r.latency_ms['max']:.2f}",
            cpu,
            rss,
            f"{r.publish_ms['p50']:.2f}/{r.publish_ms['p99']:.2f}",
            f"{r.loadgen_cpu_percent:.0f}%",
        )
    console.print(table)
    if by_key:
        first = results[0].server
        console.print(f"(x) = ratio to {first} in the same run; lower is better.")
    for r in results:
        for error in r.errors:
            console.print(f"[yellow]{r.server}/{r.transport}/{r.subscribers}:[/yellow] {error}")


def write_plot(results: list[Result], path: str) -> str | None:
    """Draw p99 latency and CPU per delivery against N; the reason when it cannot."""
    try:
        # Imported by name: matplotlib is an optional extra and may be absent when typed.
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "matplotlib is not installed (pip install 'tidings[bench]'); no plot written"
    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(11, 4.5))
    series: dict[str, list[Result]] = {}
    for r in results:
        series.setdefault(f"{r.server} {r.transport}", []).append(r)
    for label, points in series.items():
        points.sort(key=lambda r: r.subscribers)
        xs = [r.subscribers for r in points]
        latency.plot(xs, [r.latency_ms["p99"] for r in points], marker="o", label=label)
        cpu.plot(xs, [r.cpu_us_per_delivery for r in points], marker="o", label=label)
    for axes, title in ((latency, "p99 publish→receive (ms)"), (cpu, "server CPU µs per delivery")):
        axes.set_xscale("log")
        axes.set_xlabel("subscribers")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None
