"""OpenAPI entries for the two streaming endpoints, which FastAPI cannot describe itself."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tidings.core.routes import StreamRoute

__all__ = ["CHANNEL_PATTERN", "ERROR_RESPONSES", "STREAM_PATHS", "route_paths"]

#: What a channel name is (core.channels), for parameters and fields of the document.
CHANNEL_PATTERN = r"^[A-Za-z0-9_\-.:/@=]{1,200}$"

_ERROR_BODY: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                }
            },
        }
    }
}

#: The errors any operation may answer with, in the body of SPEC §3 (codes in
#: docs/protocol.md#error-codes).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": _ERROR_BODY}
    for status, description in (
        (400, "invalid JSON, field, channel, type or query (`code` says which)"),
        (401, "a credential is needed, or the one given is not valid"),
        (403, "the credential does not allow it"),
        (404, "no such thing (webhook, delivery, schedule, command)"),
        (405, "method not allowed"),
        (408, "the request's headers or body did not arrive in time"),
        (413, "body, event or batch over its limit"),
        (415, "the body is not JSON"),
        (429, "over a rate or a limit; `Retry-After` says when to try again"),
        (431, "the request's header block is over `max_header_size`"),
        (503, "the store or broker cannot be reached, or the hub is stopping"),
    )
}

_SSE_DESCRIPTION = """
A `text/event-stream` of the events of one or more channels.

Frames:

```
retry: 3000

id: 3fa2c1-41
event: client_connected
data: {"id":"3fa2c1-41","channel":"network:wlan0","type":"client_connected",...}

: ping
```

* The first frame sets the reconnection delay (`retry`). An `id:`-only frame then
  records the stream's position, so resume works even before the first event.
* `id:` is a resume cursor for the whole stream. Browsers send it back as
  `Last-Event-ID` when they reconnect; other clients may pass `?last_event_id=`.
  The hub then sends exactly the missed events, in order, then live ones.
* `event: reset` (data names the channel) means history no longer reaches back to
  your position: refetch state through your REST API, then carry on.
* `event: disconnect` (data has the `reason`) comes right before the hub closes.
* `: ping` comments every 15 s keep proxies from closing an idle stream.
* With `?plain=1` events carry no `event:` line, so they all reach `onmessage`.

Reconnection: EventSource reconnects by itself after `retry` ms and resends
`Last-Event-ID`. Other clients should do the same, with exponential backoff and
jitter (1 s, x2, at most 30 s) after repeated failures.

```sh
curl -N 'http://127.0.0.1:8000/api/v1/events?channel=alerts'
```

```js
const source = new EventSource("/api/v1/events?channel=alerts");
source.addEventListener("disk_full", (e) => console.log(JSON.parse(e.data)));
source.addEventListener("reset", (e) => refetchState(JSON.parse(e.data).channel));
```
"""

_WS_DESCRIPTION = """
Upgrade to WebSocket. Every message is one JSON object with a `type`.

Server → client: `connected` (first), `event` (`{"type":"event","data":{event}}`),
`subscribed` / `unsubscribed`, `reset`, `error`, `ping` (every 30 s), `pong`,
`published`, `result`, `disconnect` (then a close frame).

Client → server: `subscribe` (`channel`, optional `since` = the last event id you saw,
optional `types`), `unsubscribe`, `publish` (`channel`, `event`, `data`), `ping`,
`pong`, `refresh` (`token`), `command` (`name`, `args`). Add an `id` to any request
and the reply carries it.

Answer the server's `ping` with `{"type":"pong"}` (any message will do): a client
silent for two ping intervals is closed as stale. Messages over 64 KiB close the
connection with 1009.

Close codes: 4000 server_shutdown, 4002 token_expired, 4005 slow_consumer, 4006 stale,
4007 max_age, 4010 reconnect, 4029 rate_limited — reconnect (with backoff, resuming
with `since`); 4001 unauthorized, 4003 forbidden, 4004 token_revoked, 4008 bad_request,
4009 disconnected, 1009 message too big — do not reconnect until the cause is fixed.

```js
const ws = new WebSocket("ws://127.0.0.1:8000/ws?channel=alerts");
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if (msg.type === "event") lastId = msg.data.id;
  if (msg.type === "ping") ws.send('{"type":"pong"}');
};
// after a reconnect:
ws.send(JSON.stringify({type: "subscribe", channel: "alerts", since: lastId}));
```
"""


def _stream_params() -> list[dict[str, Any]]:
    return [
        {
            "name": "channel",
            "in": "query",
            "required": False,
            "schema": {
                "type": "array",
                "items": {"type": "string", "pattern": CHANNEL_PATTERN},
            },
            "style": "form",
            "explode": True,
            "description": "a channel to follow; repeat for several",
        },
        {
            "name": "type",
            "in": "query",
            "required": False,
            "schema": {"type": "array", "items": {"type": "string"}},
            "description": "only these event types (`*` = all)",
        },
    ]


_SSE_GET: dict[str, Any] = {
    "tags": ["stream"],
    "summary": "Server-Sent Events stream",
    "description": _SSE_DESCRIPTION,
    "parameters": [
        *_stream_params(),
        {
            "name": "last_event_id",
            "in": "query",
            "schema": {"type": "string"},
            "description": "resume cursor (same as the Last-Event-ID header)",
        },
        {
            "name": "plain",
            "in": "query",
            "schema": {"type": "boolean"},
            "description": "leave out `event:` lines",
        },
        {
            "name": "Last-Event-ID",
            "in": "header",
            "schema": {"type": "string"},
            "description": "resume cursor, as browsers send it",
        },
    ],
    "responses": {
        # Frames, not one JSON value: no schema (the frames are in the description).
        "200": {"description": "the stream", "content": {"text/event-stream": {}}},
        **{str(status): answer for status, answer in ERROR_RESPONSES.items()},
    },
}

STREAM_PATHS: dict[str, Any] = {
    "/api/v1/events": {"get": _SSE_GET},
    "/api/v1/channels/{channel}/events/stream": {
        "get": {
            **_SSE_GET,
            "summary": "Server-Sent Events stream of one channel",
            "parameters": [
                {
                    "name": "channel",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": CHANNEL_PATTERN},
                },
                *_SSE_GET["parameters"][1:],
            ],
        }
    },
    "/ws": {
        "get": {
            "tags": ["stream"],
            "summary": "WebSocket (alias /ws/events)",
            "description": _WS_DESCRIPTION,
            "parameters": _stream_params(),
            "responses": {
                "101": {"description": "switching protocols"},
                **{str(status): answer for status, answer in ERROR_RESPONSES.items()},
                "404": {
                    "description": "not a WebSocket opening handshake (a plain GET)",
                    "content": ERROR_RESPONSES[404]["content"],
                },
            },
        }
    },
}


def route_paths(routes: Iterable[StreamRoute]) -> dict[str, Any]:
    """Path items for the application's own stream routes (``[[routes]]``)."""
    paths: dict[str, Any] = {}
    for route in routes:
        base = _SSE_GET if route.kind == "sse" else STREAM_PATHS["/ws"]["get"]
        follows = ", ".join(f"`{c}`" for c in route.channels) or "the `?channel=` given"
        shape = "only each event's `data`" if route.message == "data" else "whole events"
        path_params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.params
        ]
        paths[_openapi_path(route.path)] = {
            "get": {
                **base,
                "summary": f"{'SSE' if route.kind == 'sse' else 'WebSocket'} stream route",
                "description": f"Follows {follows}, carrying {shape}.\n\n" + base["description"],
                "parameters": [*path_params, *base["parameters"]],
                "operationId": "stream_" + re.sub(r"\W+", "_", route.path).strip("_"),
            }
        }
    return paths


def _openapi_path(path: str) -> str:
    # OpenAPI has no `{name:path}`: the converter is left out.
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
