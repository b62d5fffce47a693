"""Which paths are streams: one table for the ASGI app and the native front."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["STREAM_ROUTES", "StreamRoute", "match"]

Kind = Literal["sse", "websocket"]


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """A stream endpoint: a Starlette-style path and the protocol served there."""

    path: str
    kind: Kind

    @property
    def pattern(self) -> re.Pattern[str]:
        # Starlette's `{name:path}` matches across slashes, as `.+` does here.
        return re.compile(re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", self.path))


STREAM_ROUTES: tuple[StreamRoute, ...] = (
    StreamRoute("/api/v1/events", "sse"),
    StreamRoute("/api/v1/channels/{channel:path}/events/stream", "sse"),
    StreamRoute("/ws", "websocket"),
    StreamRoute("/ws/events", "websocket"),
)

_COMPILED = tuple((route, route.pattern) for route in STREAM_ROUTES)


def match(path: str) -> tuple[StreamRoute, dict[str, str]] | None:
    """The stream route of ``path`` and the values it takes from it, or None."""
    for route, pattern in _COMPILED:
        found = pattern.fullmatch(path)
        if found is not None:
            return route, found.groupdict()
    return None
