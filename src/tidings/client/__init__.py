"""Python client for tidings: async (:class:`Client`) and, for scripts, sync
(:mod:`tidings.client.sync`).

The WebSocket transport needs the ``websockets`` package; SSE and publishing over HTTP
only need ``httpx``, a dependency of tidings.
"""

from tidings.client.backoff import Backoff
from tidings.client.client import Client, Handle, Status, StatusChange, Subscription
from tidings.client.errors import (
    ClientClosed,
    ClientError,
    ConnectionFailed,
    RequestError,
    Reset,
)
from tidings.client.session import Event

__all__ = [
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionFailed",
    "Event",
    "Handle",
    "RequestError",
    "Reset",
    "Status",
    "StatusChange",
    "Subscription",
]
