"""The hub: the engine of :mod:`tidings.node` with its HTTP, SSE and WebSocket front.

This is the one class an application uses, whether it embeds tidings in its own ASGI app
or lets ``tidings serve`` run it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence

from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp

from tidings.api.app import build_app, stream_route
from tidings.core.routes import MessageMode, StreamRoute, check_route
from tidings.node import CommandHandler, Node, Publication
from tidings.signals import on_stop_signals
from tidings.streams.services import Streams

__all__ = ["CommandHandler", "Hub", "Publication"]


class Hub(Node):
    """A tidings hub. Embed it, or let ``tidings serve`` run it.

    ::

        hub = Hub(Settings(history_size=500))
        app.mount("/realtime", hub.asgi_app())
        await hub.publish("alerts", "disk_full", {"host": "db1"})
    """

    # Set while started: undoes the signal chaining (see tidings.signals).
    _undo_signals: Callable[[], None] | None = None
    _shutdown_task: asyncio.Task[None] | None = None

    @functools.cached_property
    def streams(self) -> Streams:
        """The clock and flusher every stream of this hub shares, on either path."""
        return Streams(self)

    async def start(self) -> None:
        """Connect the backends, and close the streams when the process is asked to stop
        (see :mod:`tidings.signals`). Idempotent."""
        await super().start()
        if self._undo_signals is None:
            self._undo_signals = on_stop_signals(self._on_stop_signal)

    async def stop(self, *, grace: float = 3.0) -> None:
        if self._undo_signals is not None:
            self._undo_signals()
            self._undo_signals = None
        await super().stop(grace=grace)
        self._shutdown_task = None

    def _on_stop_signal(self) -> None:
        if self.started and self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(
                self.close_connections("server_shutdown", grace=2.0)
            )

    def asgi_app(self) -> ASGIApp:
        """The hub's HTTP, SSE and WebSocket endpoints as one ASGI app.

        Mount it inside an existing app (``app.mount("/realtime", hub.asgi_app())``); its
        lifespan starts and stops the hub when the hub is not started otherwise.
        """
        return build_app(self.streams)

    def sse_route(
        self,
        path: str,
        *,
        channels: Sequence[str] = (),
        message: MessageMode = "full",
        backfill: int = 0,
    ) -> Route:
        """An SSE stream at the application's own ``path``, for ``app.routes.append``.

        ``channels`` are templates filled from the path's parameters::

            app.routes.append(hub.sse_route(
                "/api/v1/interface/{net_id}/events", channels=["network:{net_id}"]))

        Admission, authorisation and resume are those of ``/api/v1/events`` (clients may
        add ``?channel=``); ``message="data"`` puts only each event's data in its frame.
        ``backfill=N`` starts a client that brings no resume position ``N`` events back
        in each channel's history (``?backfill=`` overrides it).
        """
        route = check_route(StreamRoute(path, "sse", tuple(channels), message, backfill))
        found = stream_route(self.streams, route, lazy=True)
        assert isinstance(found, Route)
        return found

    def websocket_route(
        self, path: str, *, channels: Sequence[str] = (), message: MessageMode = "full"
    ) -> WebSocketRoute:
        """A WebSocket stream at the application's own ``path`` (see :meth:`sse_route`).

        ``message="data"`` sends ``{"type": "event", "data": <the event's data>}`` for
        clients that expect their own payload at ``data``; other messages are SPEC §5's.
        """
        route = check_route(StreamRoute(path, "websocket", tuple(channels), message))
        found = stream_route(self.streams, route, lazy=True)
        assert isinstance(found, WebSocketRoute)
        return found
