"""The AsyncAPI 3.0.0 document of a hub: its streams, channels and event types.

Served at ``GET /asyncapi.json`` and written by ``tidings schema asyncapi``. Built from
the settings and the registered event types alone (:func:`asyncapi_document` is a pure
function): the CLI makes the same document without starting a hub.

Layout: two servers (the SSE stream and the WebSocket), one channel per channel pattern
of the registered types plus the generic ``{channel}`` one, a ``control`` channel for the
messages of SPEC §4-§5 that are not events, a ``receive`` operation per channel and
``send`` operations for publishing and the client's control messages. Each registered
type is a message whose payload is the event object with the type's schema as ``data``;
the schema itself is in ``components.schemas`` under the type's name, its ``$defs``
beside it (``<type>.<def>``) with the references rewritten to point there.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from tidings.core.protocol import CLOSE_CODES
from tidings.settings import Settings
from tidings.typed import EventType, EventTypes
from tidings.version import __version__

__all__ = ["asyncapi_document", "component_key"]

_KEY_UNSAFE = re.compile(r"[^\w.\-]")
_STRING = {"type": "string"}
_REQUEST_ID = {
    "description": "the `id` of the request this answers, as the client sent it",
    "type": ["string", "integer", "null"],
}
_TIMESTAMP = {"type": "string", "format": "date-time"}


def component_key(name: str) -> str:
    """``name`` as a key AsyncAPI accepts in ``components`` and ``channels``."""
    return _KEY_UNSAFE.sub("_", name)


def _obj(required: Iterable[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


def _const(value: str) -> dict[str, Any]:
    return {"type": "string", "const": value}


def _event_payload(data: dict[str, Any], event_type: str | None = None) -> dict[str, Any]:
    return _obj(
        ("id", "channel", "type", "data", "timestamp"),
        id={"type": "string", "description": "opaque; unique within its channel"},
        channel=_STRING,
        type=_const(event_type) if event_type else _STRING,
        data=data,
        timestamp=_TIMESTAMP,
    )


def _control_messages() -> dict[str, dict[str, Any]]:
    """The messages of SPEC §4-§5 that are not events (WebSocket; SSE: reset, disconnect)."""
    reasons = sorted(CLOSE_CODES)
    server = {
        "connected": _obj(
            ("type", "connection_id", "timestamp"),
            type=_const("connected"),
            connection_id=_STRING,
            client_id={"type": ["string", "null"]},
            timestamp=_TIMESTAMP,
        ),
        "event": _obj(
            ("type", "data"),
            type=_const("event"),
            data={"$ref": "#/components/schemas/Event"},
        ),
        "subscribed": _obj(
            ("type", "channel"),
            type=_const("subscribed"),
            channel=_STRING,
            recovered={"type": "boolean"},
            position=_STRING,
            id=_REQUEST_ID,
        ),
        "unsubscribed": _obj(
            ("type", "channel"), type=_const("unsubscribed"), channel=_STRING, id=_REQUEST_ID
        ),
        "reset": _obj(
            ("type", "channel", "reason"),
            type=_const("reset"),
            channel=_STRING,
            reason={"type": "string", "enum": ["history_gap", "dropped"]},
            position=_STRING,
        ),
        "disconnect": _obj(
            ("type", "reason"),
            type=_const("disconnect"),
            reason={"type": "string", "examples": reasons},
            code={"type": "integer", "minimum": 4000, "maximum": 4999},
            reconnect={"type": "boolean"},
        ),
        "error": _obj(
            ("type", "code", "message"),
            type=_const("error"),
            code={"type": "string", "examples": ["invalid_event", "unknown_event_type"]},
            message=_STRING,
            id=_REQUEST_ID,
            errors={
                "description": "invalid_event: what is wrong with the event's data",
                "type": "array",
                "items": {"$ref": "#/components/schemas/FieldError"},
            },
            index={"type": "integer", "description": "the event's index in its batch"},
        ),
        "ping": _obj(("type",), type=_const("ping"), timestamp=_TIMESTAMP),
        "pong": _obj(("type",), type=_const("pong"), timestamp=_TIMESTAMP, id=_REQUEST_ID),
        "published": _obj(
            ("type", "event"),
            type=_const("published"),
            event={"$ref": "#/components/schemas/Event"},
            id=_REQUEST_ID,
        ),
        "result": _obj(("type",), type=_const("result"), data={}, id=_REQUEST_ID),
        "refreshed": _obj(
            ("type",), type=_const("refreshed"), expires_at={"type": "number"}, id=_REQUEST_ID
        ),
    }
    client = {
        "subscribe": _obj(
            ("type", "channel"),
            type=_const("subscribe"),
            channel=_STRING,
            since=_STRING,
            types={"type": "array", "items": _STRING},
            id=_REQUEST_ID,
        ),
        "unsubscribe": _obj(
            ("type", "channel"), type=_const("unsubscribe"), channel=_STRING, id=_REQUEST_ID
        ),
        "publish": _obj(
            ("type", "channel"),
            type=_const("publish"),
            channel=_STRING,
            event={"type": "string", "description": "the event type", "default": "message"},
            data={},
            id=_REQUEST_ID,
        ),
        "client_ping": _obj(("type",), type=_const("ping"), id=_REQUEST_ID),
        "client_pong": _obj(("type",), type=_const("pong")),
        "refresh": _obj(("type", "token"), type=_const("refresh"), token=_STRING, id=_REQUEST_ID),
        "command": _obj(
            ("type", "name"),
            type=_const("command"),
            name=_STRING,
            args={"type": "object"},
            id=_REQUEST_ID,
        ),
    }
    messages: dict[str, dict[str, Any]] = {}
    for direction, group in (("server", server), ("client", client)):
        for key, payload in group.items():
            messages[f"control.{key}"] = {
                "name": key.removeprefix("client_"),
                "title": f"{key.removeprefix('client_')} ({direction} → {_other(direction)})",
                "payload": payload,
            }
    return messages


def _other(direction: str) -> str:
    return "client" if direction == "server" else "server"


_SERVER_CONTROL = (
    "connected",
    "event",
    "subscribed",
    "unsubscribed",
    "reset",
    "disconnect",
    "error",
    "ping",
    "pong",
    "published",
    "result",
    "refreshed",
)
_CLIENT_CONTROL = (
    "subscribe",
    "unsubscribe",
    "publish",
    "client_ping",
    "client_pong",
    "refresh",
    "command",
)


def _rewrite_refs(node: Any, prefix: str) -> Any:
    """References to ``#/$defs/X`` (or ``#/definitions/X``) moved to components."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for local in ("#/$defs/", "#/definitions/"):
                    if value.startswith(local):
                        value = f"#/components/schemas/{prefix}.{value[len(local) :]}"
            out[key] = _rewrite_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, prefix) for item in node]
    return node


def _type_schemas(event: EventType) -> dict[str, Any]:
    """``components.schemas`` entries of a type: its data schema and its definitions."""
    key = component_key(event.name)
    schema = copy.deepcopy(event.schema)
    defs = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}
    schema.pop("$schema", None)
    schema.pop("$id", None)
    entries = {key: _rewrite_refs(schema, key)}
    for name, definition in defs.items():
        entries[f"{key}.{component_key(name)}"] = _rewrite_refs(definition, key)
    return entries


def asyncapi_document(
    settings: Settings, event_types: EventTypes, *, host: str | None = None, root_path: str = ""
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of a hub with these settings and event types;
    ``host`` (``name:port``) is where clients reach it (default: the listen address),
    ``root_path`` the path the hub is mounted at in an application (``/realtime``)."""
    where = host or f"{settings.host}:{settings.port}"
    root = root_path.rstrip("/")
    security = [] if settings.open_mode else _SERVER_SECURITY
    servers = {
        "sse": {
            "host": where,
            "protocol": "sse",
            "pathname": f"{root}/api/v1/events",
            "title": "Server-Sent Events",
            "description": (
                "`GET /api/v1/events?channel=A&channel=B&type=T`: one `event:` frame per "
                "event (`data:` is the event object), `reset` and `disconnect` frames; "
                "resume with `Last-Event-ID`."
            ),
            "security": security,
        },
        "websocket": {
            "host": where,
            "protocol": "ws",
            "pathname": f"{root}/ws",
            "title": "WebSocket",
            "description": "JSON messages, each with a `type` (SPEC §5).",
            "security": security,
        },
    }
    schemas: dict[str, Any] = {
        "Event": _event_payload({"description": "the event's data (any JSON)"}),
        "FieldError": _obj(
            ("path", "message"),
            path={"type": "string", "description": "JSON pointer into the event's data"},
            message=_STRING,
        ),
    }
    messages = _control_messages()
    messages["event"] = {
        "name": "event",
        "title": "An event of any type",
        "payload": {"$ref": "#/components/schemas/Event"},
    }
    typed = list(event_types)
    # Types by where they apply: the generic channel holds those that apply anywhere.
    by_pattern: dict[str, list[str]] = {}
    for event in typed:
        key = component_key(event.name)
        schemas.update(_type_schemas(event))
        messages[key] = {
            "name": event.name,
            "title": event.name,
            "summary": event.schema.get("description") or f"An `{event.name}` event",
            "contentType": "application/json",
            "payload": _event_payload({"$ref": f"#/components/schemas/{key}"}, event.name),
        }
        for pattern in event.channels or ("*",):
            by_pattern.setdefault(pattern, []).append(key)

    def refs(keys: Iterable[str]) -> dict[str, Any]:
        return {key: {"$ref": f"#/components/messages/{key}"} for key in keys}

    channels: dict[str, Any] = {
        "events": {
            "address": "{channel}",
            "title": "Any channel",
            "description": "Any channel the credential allows; events of every type.",
            "parameters": {"channel": {"description": "a channel name (`namespace:name`)"}},
            "messages": refs(["event", *by_pattern.get("*", [])]),
        },
        "control": {
            "address": None,
            "title": "The connection itself",
            "description": (
                "Messages that are not events: WebSocket control messages both ways, and "
                "the SSE `reset` and `disconnect` frames."
            ),
            "messages": refs(f"control.{name}" for name in (*_SERVER_CONTROL, *_CLIENT_CONTROL)),
        },
    }
    operations: dict[str, Any] = {}
    for pattern, keys in sorted(by_pattern.items()):
        if pattern == "*":
            continue
        name = f"typed.{component_key(pattern)}"
        channels[name] = {
            "address": pattern,
            "title": f"Channels matching {pattern}",
            "description": f"Channels matching the glob `{pattern}`, where these types apply.",
            "messages": refs(keys),
        }
    for name, channel in channels.items():
        keys = [k for k in channel["messages"] if not k.startswith("control.client_")]
        keys = [k for k in keys if k.removeprefix("control.") not in _CLIENT_CONTROL]
        operations[f"receive.{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"Receive on {channel['title'].lower()}",
            "messages": [{"$ref": f"#/channels/{name}/messages/{key}"} for key in keys],
        }
    operations["send.control"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/control"},
        "summary": "Subscribe, unsubscribe, publish, ping, refresh and run commands (WebSocket)",
        "messages": [
            {"$ref": f"#/channels/control/messages/control.{key}"} for key in _CLIENT_CONTROL
        ],
    }
    publishable = ["event", *by_pattern.get("*", [])]
    operations["send.publish"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/events"},
        "summary": "Publish (WebSocket `publish`, or `POST /api/v1/publish`)",
        "description": (
            "Data of a registered type is validated: a mismatch is refused with "
            "`invalid_event` and `errors`, a list of `{path, message}`."
        ),
        "messages": [{"$ref": f"#/channels/events/messages/{key}"} for key in publishable],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tidings",
            "version": __version__,
            "description": (
                "A tidings hub: publish over HTTP or WebSocket, receive over SSE or "
                "WebSocket. Registered event types: "
                + (", ".join(f"`{t.name}`" for t in typed) or "none")
                + ("; unregistered types are refused." if event_types.strict else ".")
            ),
        },
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


_SECURITY_SCHEMES: dict[str, Any] = {
    "jwtQuery": {
        "type": "httpApiKey",
        "name": "token",
        "in": "query",
        "description": "A JWT as `?token=` (what a browser's EventSource and WebSocket can send)",
    },
    "jwtBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT as `Authorization: Bearer`",
    },
    "jwtCookie": {
        "type": "httpApiKey",
        "name": "access_token",
        "in": "cookie",
        "description": "A JWT in the `access_token` cookie",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of the hub (`--api-key`) as `Authorization: Bearer`",
    },
}

_SERVER_SECURITY = [
    {"$ref": f"#/components/securitySchemes/{name}"}
    for name in ("jwtQuery", "jwtBearer", "jwtCookie", "apiKey")
]
