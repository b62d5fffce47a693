"""The fault schedule of the chaos run: which fault, when. Pure; the run carries it out.

Faults come every ``interval`` seconds after a quiet start, cycling through the kinds so
that a run of a minute sees each at least once, and the node killed moves round the
cluster. Nothing is scheduled in the last ``interval``: the run ends with the cluster
whole, so that what is missing at the end is lost, not late.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "Fault", "plan"]

#: Every kind of fault, in the order a run injects them.
KINDS = ("kill_node", "cut_connections", "restart_redis", "pause_subscribers", "expire_tokens")


@dataclass(frozen=True)
class Fault:
    """Inject ``kind`` at ``at`` seconds into the publishing phase (``node``: which one)."""

    at: float
    kind: str
    node: int = 0


def plan(duration: float, nodes: int, *, interval: float = 8.0, start: float = 3.0) -> list[Fault]:
    """The faults of a ``duration``-second run on ``nodes`` nodes."""
    if nodes < 1:
        raise ValueError("a cluster has at least one node")
    faults: list[Fault] = []
    at = start
    index = 0
    kills = 0
    while at <= duration - interval:
        kind = KINDS[index % len(KINDS)]
        node = 0
        if kind in ("kill_node", "expire_tokens"):
            node = kills % nodes
            if kind == "kill_node":
                kills += 1
        faults.append(Fault(at, kind, node))
        index += 1
        at += interval
    return faults
