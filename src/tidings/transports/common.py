"""What the SSE and WebSocket endpoints share: reading the request and admitting it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import Scope

from tidings.auth.origins import origin_allowed
from tidings.core.channels import validate_channel, validate_type
from tidings.core.request import facts_from_scope
from tidings.errors import BadRequest, Forbidden
from tidings.gate import Admission
from tidings.identity import Identity
from tidings.node import Node

__all__ = [
    "Admission",
    "StreamRequest",
    "admit",
    "check_subscribe",
    "header",
    "read_stream_request",
    "remote_address",
]


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a client asked for when it opened a stream."""

    channels: tuple[str, ...]
    types: frozenset[str] | None
    last_event_id: str | None
    plain: bool


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def remote_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def read_stream_request(scope: Scope) -> StreamRequest:
    """Parse channels, types and the resume position from a stream request."""
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    channels = [value for key, value in query if key == "channel"]
    path_channel = scope.get("path_params", {}).get("channel")
    if path_channel is not None:
        channels.insert(0, path_channel)
    for channel in channels:
        validate_channel(channel)
    type_values = [value for key, value in query if key == "type"]
    types: frozenset[str] | None = None
    if type_values and "*" not in type_values:
        types = frozenset(validate_type(t) for t in type_values)
    last_event_id = header(scope, b"last-event-id")
    for key, value in query:
        if key == "last_event_id":
            last_event_id = value
    plain = any(key == "plain" and value not in ("", "0", "false") for key, value in query)
    if last_event_id is not None and len(last_event_id) > 64 * 1024:
        raise BadRequest("Last-Event-ID is too long", code="invalid_last_event_id")
    return StreamRequest(_unique(channels), types, last_event_id, plain)


def check_subscribe(identity: Identity, channels: Iterable[str]) -> None:
    for channel in channels:
        if not identity.may_subscribe(channel):
            raise Forbidden(f"not allowed to subscribe to {channel!r}")


def check_origin(hub: Node, scope: Scope) -> None:
    """Refuse a browser request from an origin outside the allowlist (403)."""
    if not origin_allowed(
        header(scope, b"origin"), header(scope, b"host"), hub.settings.allowed_origins
    ):
        raise Forbidden("this origin may not open streams", code="origin_not_allowed")


async def admit(hub: Node, scope: Scope, request: StreamRequest, transport: str) -> Admission:
    """Decide whether a stream may open, as whom, and on which channels (see
    :meth:`tidings.gate.Gate.admit`)."""
    return await hub.gate.admit(facts_from_scope(scope), request.channels, transport)
