"""Which paths are streams: one table for the ASGI app and the native front.

A route is a Starlette-style path, the protocol served there, the channels it follows
(templates filled from the path's parameters: ``/api/v1/interface/{net_id}/events`` with
``network:{net_id}``) and how each event is put on the wire (``full``: the event object;
``data``: only its ``data``, for clients that expect their own payload there). The
hub's own routes come first; an application adds its own with ``hub.sse_route(...)``,
``hub.websocket_route(...)`` or ``[[routes]]`` in the TOML file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from tidings.core.channels import validate_channel
from tidings.errors import TidingsError

__all__ = ["STREAM_ROUTES", "MessageMode", "RouteTable", "StreamRoute", "check_route", "fill"]

Kind = Literal["sse", "websocket"]
#: What an event frame carries: the whole event, or only its ``data``.
MessageMode = Literal["full", "data"]

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """A stream endpoint: a path, the protocol served there, its channels, its message."""

    path: str
    kind: Kind
    #: Channel templates: ``{name}`` is the path parameter ``name``.
    channels: tuple[str, ...] = ()
    message: MessageMode = "full"
    #: SSE: how many past events a client without a resume position gets first.
    backfill: int = 0

    @property
    def pattern(self) -> re.Pattern[str]:
        # `{name}` matches one path segment, `{name:path}` any rest (Starlette's rules).
        pattern, last = "", 0
        for found in _PARAM.finditer(self.path):
            body = ".+" if found.group(2) == "path" else "[^/]+"
            pattern += re.escape(self.path[last : found.start()]) + f"(?P<{found.group(1)}>{body})"
            last = found.end()
        pattern += re.escape(self.path[last:])
        return re.compile(pattern)

    @property
    def params(self) -> tuple[str, ...]:
        """The names of the path's parameters."""
        return tuple(found.group(1) for found in _PARAM.finditer(self.path))

    def channels_for(self, params: Mapping[str, str]) -> list[str]:
        """The route's channels for one request, each a valid channel name (or
        :class:`~tidings.errors.InvalidChannel`, a 400 that names it)."""
        return [validate_channel(fill(template, params)) for template in self.channels]


def fill(template: str, params: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by ``params[name]``."""
    return _PARAM.sub(lambda found: params.get(found.group(1), found.group(0)), template)


def check_route(route: StreamRoute) -> StreamRoute:
    """``route`` if it can serve requests; :class:`ValueError` saying why not."""
    if not route.path.startswith("/"):
        raise ValueError(f"route path {route.path!r} must start with /")
    if not 0 <= route.backfill <= 10_000:
        raise ValueError(f"route {route.path!r}: backfill must be between 0 and 10000 events")
    params = set(route.params)
    for template in route.channels:
        unknown = [name for name, _ in _PARAM.findall(template) if name not in params]
        if unknown:
            raise ValueError(
                f"channel {template!r} of route {route.path!r} uses {{{unknown[0]}}}, "
                "which is not a parameter of the path"
            )
        try:
            validate_channel(fill(template, dict.fromkeys(params, "x")))
        except TidingsError as exc:
            raise ValueError(f"route {route.path!r}: {exc.message}") from None
    return route


STREAM_ROUTES: tuple[StreamRoute, ...] = (
    StreamRoute("/api/v1/events", "sse"),
    StreamRoute("/api/v1/channels/{channel:path}/events/stream", "sse", ("{channel}",)),
    StreamRoute("/ws", "websocket"),
    StreamRoute("/ws/events", "websocket"),
)


class RouteTable:
    """The hub's own stream routes, then the application's, matched in that order."""

    def __init__(self, extra: Iterable[StreamRoute] = ()) -> None:
        #: The application's routes.
        self.extra = tuple(extra)
        self.routes = (*STREAM_ROUTES, *self.extra)
        self._compiled = tuple((route, route.pattern) for route in self.routes)

    def match(self, path: str) -> tuple[StreamRoute, dict[str, str]] | None:
        """The stream route of ``path`` and the values it takes from it, or None."""
        for route, pattern in self._compiled:
            found = pattern.fullmatch(path)
            if found is not None:
                return route, found.groupdict()
        return None
