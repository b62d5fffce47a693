"""What the native front of one ``tidings serve`` process is configured with."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.dataplane.guard import RequestLimits, request_limits
from tidings.streams.cors import Cors
from tidings.streams.services import Streams

__all__ = ["DataPlane"]


@dataclass(slots=True)
class DataPlane:
    """The hub's shared stream services, and how to find a client behind a proxy
    (uvicorn's ``proxy_headers`` and ``forwarded_allow_ips``, which the ASGI app gets
    from uvicorn itself)."""

    streams: Streams
    proxy_headers: bool = True
    trusted: str | list[str] = "127.0.0.1"

    cors: Cors = field(init=False)
    #: Bounds of every request that is not a stream (see tidings.dataplane.guard).
    limits: RequestLimits = field(init=False)

    def __post_init__(self) -> None:
        settings = self.streams.node.settings
        self.cors = Cors(settings.allowed_origins)
        self.limits = request_limits(settings)
