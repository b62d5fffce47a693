"""What the SSE and WebSocket endpoints share: reading the request and identity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import Scope

from tidings.core.channels import validate_channel, validate_type
from tidings.errors import BadRequest, Forbidden
from tidings.identity import ANONYMOUS, Identity

__all__ = ["StreamRequest", "authenticate", "header", "read_stream_request", "remote_address"]


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a client asked for when it opened a stream."""

    channels: tuple[str, ...]
    types: frozenset[str] | None
    last_event_id: str | None
    plain: bool
    query: tuple[tuple[str, str], ...]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def remote_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def read_stream_request(scope: Scope) -> StreamRequest:
    """Parse channels, types and the resume position from a stream request."""
    query = tuple(
        parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    )
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
    return StreamRequest(_unique(channels), types, last_event_id, plain, query)


def authenticate(scope: Scope) -> Identity:
    """The identity of a stream request. Open mode: anonymous, allowed everything."""
    return ANONYMOUS


def check_subscribe(identity: Identity, channels: Iterable[str]) -> None:
    for channel in channels:
        if not identity.may_subscribe(channel):
            raise Forbidden(f"not allowed to subscribe to {channel!r}")
