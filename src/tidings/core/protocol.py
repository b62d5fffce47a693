"""The WebSocket message protocol (SPEC §5): client messages in, server messages out.

:func:`parse` turns one client message (text or bytes) into a typed, frozen command or
raises :class:`~tidings.errors.ProtocolError` carrying the request ``id`` when one could
be read, so the error reply can name it. The ``*_message`` functions build the server's
messages as dicts and :func:`encode` turns any of them into the text frame to send.

Close codes live here too, in one table, because a client needs all of them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from tidings.core.channels import validate_channel, validate_type
from tidings.errors import BadRequest, ProtocolError

__all__ = [
    "CLOSE_CODES",
    "ClientMessage",
    "CloseCode",
    "Command",
    "Ping",
    "Pong",
    "Publish",
    "Refresh",
    "Subscribe",
    "Unsubscribe",
    "close_code_for",
    "encode",
    "parse",
    "refusal_code",
]

RequestId = str | int | None


class CloseCode(IntEnum):
    """WebSocket close codes the hub sends. ``reconnect`` says whether a client should retry."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    SERVER_SHUTDOWN = 4000
    UNAUTHORIZED = 4001
    TOKEN_EXPIRED = 4002
    FORBIDDEN = 4003
    TOKEN_REVOKED = 4004
    SLOW_CONSUMER = 4005
    STALE = 4006
    MAX_AGE = 4007
    BAD_REQUEST = 4008
    DISCONNECTED = 4009
    RECONNECT = 4010
    RATE_LIMITED = 4029


#: reason -> (close code, whether the client should reconnect). The one table of SPEC §5.
CLOSE_CODES: dict[str, tuple[CloseCode, bool]] = {
    "server_shutdown": (CloseCode.SERVER_SHUTDOWN, True),
    "unauthorized": (CloseCode.UNAUTHORIZED, False),
    "token_expired": (CloseCode.TOKEN_EXPIRED, True),
    "forbidden": (CloseCode.FORBIDDEN, False),
    "token_revoked": (CloseCode.TOKEN_REVOKED, False),
    "slow_consumer": (CloseCode.SLOW_CONSUMER, True),
    "stale": (CloseCode.STALE, True),
    "max_age": (CloseCode.MAX_AGE, True),
    "bad_request": (CloseCode.BAD_REQUEST, False),
    "disconnected": (CloseCode.DISCONNECTED, False),
    "reconnect": (CloseCode.RECONNECT, True),
    "rate_limited": (CloseCode.RATE_LIMITED, True),
    "too_many_connections": (CloseCode.RATE_LIMITED, True),
    "message_too_big": (CloseCode.MESSAGE_TOO_BIG, False),
    "unavailable": (CloseCode.TRY_AGAIN_LATER, True),
}


def refusal_code(status: int) -> CloseCode:
    """The close code that refuses a WebSocket for an error of HTTP ``status``."""
    return {
        401: CloseCode.UNAUTHORIZED,
        403: CloseCode.FORBIDDEN,
        429: CloseCode.RATE_LIMITED,
        503: CloseCode.TRY_AGAIN_LATER,
    }.get(status, CloseCode.BAD_REQUEST)


def close_code_for(reason: str) -> CloseCode:
    """The close code for a disconnect ``reason``; unknown reasons do not reconnect."""
    return CLOSE_CODES.get(reason, (CloseCode.DISCONNECTED, False))[0]


# --- client -> server -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    since: str | None = None
    types: frozenset[str] | None = None
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    event: str
    data: Any
    id: RequestId = None
    #: Scheduled publish (SPEC §8): an RFC 3339 time, or seconds from now, and a key.
    at: str | None = None
    delay_s: float | None = None
    key: str | None = None

    @property
    def scheduled(self) -> bool:
        return self.at is not None or self.delay_s is not None


@dataclass(frozen=True, slots=True)
class Ping:
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Pong:
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: dict[str, Any]
    id: RequestId = None


ClientMessage = Subscribe | Unsubscribe | Publish | Ping | Pong | Refresh | Command


def _request_id(raw: dict[str, Any]) -> RequestId:
    value = raw.get("id")
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        if isinstance(value, str) and len(value) > 100:
            raise ProtocolError("id must be at most 100 characters", code="invalid_id")
        return value
    raise ProtocolError("id must be a string or an integer", code="invalid_id")


def _required_str(raw: dict[str, Any], key: str, rid: RequestId) -> str:
    value = raw.get(key)
    if value is None:
        raise ProtocolError(f"{key!r} is required", code="missing_field", request_id=rid)
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string", code="invalid_field", request_id=rid)
    return value


def _channel(raw: dict[str, Any], rid: RequestId) -> str:
    name = _required_str(raw, "channel", rid)
    try:
        return validate_channel(name)
    except BadRequest as exc:
        exc.request_id = rid
        raise


def _types(raw: dict[str, Any], rid: RequestId) -> frozenset[str] | None:
    value = raw.get("types")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(
            "'types' must be a list of strings", code="invalid_field", request_id=rid
        )
    if "*" in value or not value:
        return None
    try:
        return frozenset(validate_type(v) for v in value)
    except BadRequest as exc:
        exc.request_id = rid
        raise


def parse(message: str | bytes) -> ClientMessage:
    """Parse one client message; raise :class:`ProtocolError` when it is not acceptable."""
    try:
        raw = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise ProtocolError("message is not valid JSON", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise ProtocolError("message must be a JSON object", code="invalid_message")
    rid = _request_id(raw)
    kind = raw.get("type")
    if kind is None:
        raise ProtocolError("'type' is required", code="missing_field", request_id=rid)
    if kind == "subscribe":
        since = raw.get("since")
        if since is not None and not isinstance(since, str):
            raise ProtocolError(
                "'since' must be an event id string", code="invalid_field", request_id=rid
            )
        return Subscribe(_channel(raw, rid), since, _types(raw, rid), rid)
    if kind == "unsubscribe":
        return Unsubscribe(_channel(raw, rid), rid)
    if kind == "publish":
        channel = _channel(raw, rid)
        event = raw.get("event", "message")
        try:
            validate_type(event)
        except BadRequest as exc:
            exc.request_id = rid
            raise
        if "data" not in raw:
            raise ProtocolError("'data' is required", code="missing_field", request_id=rid)
        at, delay, key = raw.get("at"), raw.get("delay_s"), raw.get("key")
        if at is not None and not isinstance(at, str):
            raise ProtocolError(
                "'at' must be an RFC 3339 time", code="invalid_field", request_id=rid
            )
        if delay is not None and (not isinstance(delay, int | float) or isinstance(delay, bool)):
            raise ProtocolError("'delay_s' must be a number", code="invalid_field", request_id=rid)
        if key is not None and (not isinstance(key, str) or (at is None and delay is None)):
            raise ProtocolError(
                "'key' is a string naming a scheduled event: give 'at' or 'delay_s' with it",
                code="invalid_field",
                request_id=rid,
            )
        return Publish(channel, event, raw["data"], rid, at, delay, key)
    if kind == "ping":
        return Ping(rid)
    if kind == "pong":
        return Pong(rid)
    if kind == "refresh":
        return Refresh(_required_str(raw, "token", rid), rid)
    if kind == "command":
        name = _required_str(raw, "name", rid)
        args = raw.get("args", {})
        if not isinstance(args, dict):
            raise ProtocolError("'args' must be an object", code="invalid_field", request_id=rid)
        return Command(name, args, rid)
    shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
    raise ProtocolError(f"unknown message type {shown!r}", code="unknown_type", request_id=rid)


# --- server -> client -------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """One server message as the text of a WebSocket frame."""
    return orjson.dumps(message).decode()


def connected_message(connection_id: str, client_id: str | None, timestamp: str) -> dict[str, Any]:
    return {
        "type": "connected",
        "connection_id": connection_id,
        "client_id": client_id,
        "timestamp": timestamp,
    }


def subscribed_message(
    channel: str, *, recovered: bool, position: str, rid: RequestId
) -> dict[str, Any]:
    return {
        "type": "subscribed",
        "channel": channel,
        "recovered": recovered,
        "position": position,
        "id": rid,
    }


def unsubscribed_message(channel: str, rid: RequestId) -> dict[str, Any]:
    return {"type": "unsubscribed", "channel": channel, "id": rid}


def reset_message(channel: str, reason: str, position: str) -> dict[str, Any]:
    return {"type": "reset", "channel": channel, "reason": reason, "position": position}


def error_message(code: str, message: str, rid: RequestId, **extra: Any) -> dict[str, Any]:
    """An ``error`` message; ``extra`` holds an error's details (a typed event's ``errors``)."""
    return {"type": "error", "code": code, "message": message, "id": rid, **extra}


def disconnect_message(reason: str) -> dict[str, Any]:
    code, reconnect = CLOSE_CODES.get(reason, (CloseCode.DISCONNECTED, False))
    return {"type": "disconnect", "reason": reason, "code": int(code), "reconnect": reconnect}


def ping_message(timestamp: str) -> dict[str, Any]:
    return {"type": "ping", "timestamp": timestamp}


def pong_message(timestamp: str, rid: RequestId) -> dict[str, Any]:
    return {"type": "pong", "timestamp": timestamp, "id": rid}


def published_message(event: dict[str, Any], rid: RequestId) -> dict[str, Any]:
    return {"type": "published", "event": event, "id": rid}


def scheduled_message(scheduled: dict[str, Any], rid: RequestId) -> dict[str, Any]:
    return {"type": "scheduled", "scheduled": scheduled, "id": rid}


def result_message(data: Any, rid: RequestId) -> dict[str, Any]:
    return {"type": "result", "data": data, "id": rid}
