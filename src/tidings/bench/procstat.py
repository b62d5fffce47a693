"""What the benchmark reads about a process from Linux: CPU time, resident memory, cores.

Linux only (``/proc``); every function here is a plain read, no process is changed
except by :func:`pin`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

__all__ = [
    "USABLE_CORES",
    "cpu_seconds",
    "pin",
    "raise_open_files",
    "rss_bytes",
    "stat_cpu_seconds",
]

_TICKS = os.sysconf("SC_CLK_TCK")

#: The cores this process could run on when it started, before :func:`pin` narrowed
#: them: pinning itself must not stop it from pinning a server to another core.
USABLE_CORES: tuple[int, ...] = (
    tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
)


def stat_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from ``/proc/<pid>/stat``; 1/100 s steps."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _process_cpu_clock(pid: int) -> int:
    # The kernel's per-process CPU-time clock (CPUCLOCK_SCHED, whole thread group), the
    # clock id clock_getcpuclockid(3) returns: the same utime + stime in nanoseconds.
    return ((~pid) << 3) | 2


def cpu_seconds(pid: int) -> tuple[float, str]:
    """The CPU time a process has used and how it was read.

    The process CPU clock has nanosecond resolution; ``/proc/<pid>/stat`` counts in
    clock ticks (10 ms), too coarse for small runs, and is the fallback.
    """
    try:
        return time.clock_gettime_ns(_process_cpu_clock(pid)) / 1e9, "cpu-clock"
    except OSError:
        return stat_cpu_seconds(pid), "proc-stat"


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for process {pid}")


def pin(pid: int, core: int) -> bool:
    """Pin every thread of a process (0 = this one) to one core, when there are ≥ 2."""
    if not hasattr(os, "sched_setaffinity") or len(USABLE_CORES) < 2:
        return False
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {core})
    return True


def raise_open_files(needed: int) -> int:
    """Raise this process's soft open-files limit (inherited by children) to ``needed``,
    or as far as the hard limit allows; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
