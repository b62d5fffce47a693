"""Running a hub under uvicorn, with the shutdown SPEC §2 promises.

On SIGTERM or SIGINT every stream gets ``disconnect`` with ``server_shutdown`` first
(uvicorn alone would wait for streaming responses that never end), then uvicorn closes
the listening socket and the process exits within a few seconds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from tidings.dataplane.asgi_websocket import HandshakeFirstWebSocketProtocol
from tidings.dataplane.front import FrontProtocol
from tidings.dataplane.guard import GuardedHttpProtocol, request_limits
from tidings.dataplane.plane import DataPlane
from tidings.hub import Hub
from tidings.settings import Settings

__all__ = ["HubServer", "build_config"]

log = logging.getLogger("tidings.server")


class HubServer(uvicorn.Server):
    """A uvicorn server that closes the hub's streams before it drains connections."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: Any = None) -> None:
        log.info("shutting down: closing streams with server_shutdown")
        await self.hub.close_connections("server_shutdown", grace=2.0)
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signals it caught once it has shut down, so SIGTERM would
        # end the process with -15. A graceful shutdown on SIGTERM is a clean exit: 0.
        with super().capture_signals():
            yield
            self._captured_signals[:] = [
                sig for sig in self._captured_signals if sig != signal.SIGTERM
            ]


def build_config(hub: Hub, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "ws_max_size": settings.max_message_size,
        # The hub sends its own JSON pings and closes stale clients itself.
        "ws_ping_interval": None,
        "ws_ping_timeout": None,
        "ws_per_message_deflate": False,
        # uvicorn's own, but frames sent before the handshake is answered wait for it.
        "ws": HandshakeFirstWebSocketProtocol,
        "timeout_graceful_shutdown": 2,
        "proxy_headers": True,
        "server_header": False,
    }
    options.update(overrides)
    config = uvicorn.Config(hub.asgi_app(), **options)
    if settings.data_plane == "native":
        # Streams are served natively on the same port; everything else by the ASGI app.
        plane = DataPlane(
            hub.streams, proxy_headers=config.proxy_headers, trusted=config.forwarded_allow_ips
        )
        config.http = functools.partial(FrontProtocol, plane=plane)  # type: ignore[assignment]
    else:
        limits = request_limits(settings)
        config.http = functools.partial(GuardedHttpProtocol, limits=limits)  # type: ignore[assignment]
    return config
