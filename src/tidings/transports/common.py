"""What the SSE and WebSocket endpoints share: reading the request and admitting it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from starlette.types import Scope

from tidings.auth.authenticator import credential_from
from tidings.auth.origins import origin_allowed
from tidings.core.channels import personal_channel, validate_channel, validate_type
from tidings.errors import BadRequest, Forbidden, LimitExceeded
from tidings.hooks import decide
from tidings.hub import Hub
from tidings.identity import Identity

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


@dataclass(frozen=True, slots=True)
class Admission:
    """Who may open the stream, and the channels it follows from the start."""

    identity: Identity
    channels: tuple[str, ...]


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


def check_origin(hub: Hub, scope: Scope) -> None:
    """Refuse a browser request from an origin outside the allowlist (403)."""
    if not origin_allowed(
        header(scope, b"origin"), header(scope, b"host"), hub.settings.allowed_origins
    ):
        raise Forbidden("this origin may not open streams", code="origin_not_allowed")


async def admit(hub: Hub, scope: Scope, request: StreamRequest, transport: str) -> Admission:
    """Decide whether a stream may open, as whom, and on which channels.

    In order: the connection rate per IP, the credential, the connect hook, then the
    right to every requested channel. The personal channel of an identified client is
    always added.
    """
    wait = hub.connection_limiter.hit(_ip(scope))
    if wait is not None:
        raise LimitExceeded(
            "too many new connections from this address", code="rate_limited", retry_after=wait
        )
    identity = hub.authenticator.authenticate(
        credential_from(scope.get("query_string", b""), scope.get("headers", ()))
    )
    channels = list(request.channels)
    hook = hub.connect_hook
    if hook is not None:
        decision = await decide(
            hook,
            identity,
            {"transport": transport, "channels": list(request.channels)},
            wait=hub.settings.connect_hook_timeout,
        )
        allowed = decision.allowed if decision.allowed is not None else identity.subscribe
        if allowed is not None:
            identity = replace(identity, subscribe=(*allowed, *decision.subscribe))
        channels.extend(decision.subscribe)
    if identity.client_id is not None and identity.claims:
        channels.append(personal_channel(identity.client_id))
    channels = list(_unique(channels))
    check_subscribe(identity, channels)
    if len(channels) > hub.settings.max_subscriptions:
        raise BadRequest(
            f"a stream may follow at most {hub.settings.max_subscriptions} channels",
            code="too_many_subscriptions",
        )
    return Admission(identity, tuple(channels))
