"""The servers ``tidings bench`` can measure, and how a subscriber talks to each.

A :class:`Target` says how to start a server (a command line on a given port), what its
subscribers speak (the URL path per transport, the message that means "subscribed", any
handshake replies: Socket.IO's) and where its health check and publish endpoint are.
An application's own server (an example under ``examples/``) is measured by a Target of
its own: its publish path and a body template that carries the stamped data. Baselines
live in the repository's ``benchmarks/`` directory, so they need a checkout; tidings
itself needs nothing more.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TARGETS", "Target", "baseline_root", "unavailable_reason"]

CHANNEL = "bench"


@dataclass(frozen=True)
class Target:
    name: str
    #: ``python -m`` module and its arguments before ``--port``.
    module: tuple[str, ...]
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Request path (with query) per transport it supports.
    paths: dict[str, str] = field(default_factory=dict)
    #: Bytes at the start of (WS) or inside (SSE) the message that means "subscribed".
    ready_marker: dict[str, bytes] = field(default_factory=dict)
    #: Speaks Engine.IO/Socket.IO over the WebSocket (open, ping and connect packets).
    socketio: bool = False
    needs_checkout: bool = False
    needs_module: str | None = None
    #: Answers 200 once the server is up.
    health_path: str = "/health"
    #: Where the publisher POSTs each event.
    publish_path: str = "/api/v1/publish"
    #: JSON body with the string ``"$data"`` where the stamped data goes; ``None``: the
    #: hub's ``{"channel": "bench", "type": "bench", "data": …}``.
    publish_template: str | None = None

    def command(self, port: int, subscribers: int) -> list[str]:
        args = [sys.executable, "-m", *self.module, "--port", str(port), *self.extra_args]
        if self.name.startswith("tidings"):
            limit = str(max(10_000, subscribers * 2))
            args += ["--max-connections", limit, "--connection-rate", "1000000000"]
        return args


TARGETS: dict[str, Target] = {
    "tidings": Target(
        name="tidings",
        module=("tidings", "serve"),
        extra_args=("--log-level", "warning"),
        env={"TIDINGS_PUBLISH_RATE": "1000000000"},
        paths={"ws": f"/ws?channel={CHANNEL}", "sse": f"/api/v1/events?channel={CHANNEL}"},
        ready_marker={"ws": b'"subscribed"', "sse": b"id:"},
    ),
    # The same hub with its streams served through the ASGI endpoints (what an embedded
    # hub does), to show what the native data plane of `tidings serve` changes.
    "tidings-asgi": Target(
        name="tidings-asgi",
        module=("tidings", "serve"),
        extra_args=("--log-level", "warning"),
        env={"TIDINGS_PUBLISH_RATE": "1000000000", "TIDINGS_DATA_PLANE": "asgi"},
        paths={"ws": f"/ws?channel={CHANNEL}", "sse": f"/api/v1/events?channel={CHANNEL}"},
        ready_marker={"ws": b'"subscribed"', "sse": b"id:"},
    ),
    "handrolled": Target(
        name="handrolled",
        module=("benchmarks.handrolled",),
        paths={"ws": f"/ws?channel={CHANNEL}", "sse": f"/api/v1/events?channel={CHANNEL}"},
        ready_marker={"ws": b'"subscribed"', "sse": b": connected"},
        needs_checkout=True,
    ),
    "socketio": Target(
        name="socketio",
        module=("benchmarks.socketio_server",),
        paths={"ws": f"/socket.io/?EIO=4&transport=websocket&channel={CHANNEL}"},
        ready_marker={"ws": b"40"},
        socketio=True,
        needs_checkout=True,
        needs_module="socketio",
    ),
}


# Another version of tidings, to compare a change with what came before it in one run:
# TIDINGS_BENCH_OTHER names the `src` directory of that checkout (say, a `git worktree`
# of the previous commit), and `--server tidings,tidings-other` measures both.
_OTHER = os.environ.get("TIDINGS_BENCH_OTHER")
if _OTHER:
    TARGETS["tidings-other"] = Target(
        name="tidings-other",
        module=("tidings", "serve"),
        extra_args=("--log-level", "warning"),
        env={"TIDINGS_PUBLISH_RATE": "1000000000", "PYTHONPATH": _OTHER},
        paths=TARGETS["tidings"].paths,
        ready_marker=TARGETS["tidings"].ready_marker,
    )


def baseline_root() -> Path | None:
    """The directory holding ``benchmarks/`` (a checkout of tidings), if there is one."""
    checkout = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), checkout):
        if (root / "benchmarks" / "handrolled.py").is_file():
            return root
    return None


def unavailable_reason(target: Target, transport: str) -> str | None:
    """Why this target cannot run this transport here, or ``None``."""
    if transport not in target.paths:
        return f"{target.name} has no {transport.upper()} transport"
    if target.needs_checkout and baseline_root() is None:
        return f"{target.name} lives in benchmarks/: run from a checkout of tidings"
    if target.needs_module and importlib.util.find_spec(target.needs_module) is None:
        return f"{target.needs_module} is not installed (pip install 'tidings[bench]')"
    return None
