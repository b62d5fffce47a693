"""Opening a stream: reading what it asks for, admitting it, registering its connection.

The stream cores call :func:`open_stream` with the request's facts and get back an open
:class:`~tidings.connection.Connection`, or a :class:`TidingsError` that
says why not (which each transport answers in its own way: an HTTP error, or an accepted
then closed WebSocket, see :func:`refusal`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from tidings.auth.origins import origin_allowed
from tidings.connection import Connection, Transport
from tidings.core import protocol
from tidings.core.channels import validate_channel, validate_type
from tidings.core.request import RequestFacts
from tidings.core.routes import MessageMode, StreamRoute
from tidings.core.session import Wire
from tidings.errors import BadRequest, Forbidden, TidingsError
from tidings.node import Node
from tidings.streams.dispatch import error_frame

__all__ = [
    "StreamRequest",
    "check_origin",
    "close_reason",
    "open_stream",
    "read_stream_request",
    "refusal",
]

#: A Last-Event-ID longer than this is refused before it is decoded.
MAX_LAST_EVENT_ID = 64 * 1024
#: The most events ``?backfill=`` may ask for (history holds at most ``history_size``).
MAX_BACKFILL = 10_000


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a client asked for when it opened a stream."""

    channels: tuple[str, ...]
    types: frozenset[str] | None
    last_event_id: str | None
    plain: bool
    #: What an event frame carries (the route's ``message``).
    message: MessageMode = "full"
    #: Without a resume position, start this many events back in each channel's history.
    backfill: int = 0


def read_stream_request(facts: RequestFacts, route: StreamRoute) -> StreamRequest:
    """Parse channels, types and the resume position from a request on ``route``: the
    route's channels (filled from the path) come first, then those of ``?channel=``."""
    query = parse_qsl(facts.query_string.decode("latin-1"), keep_blank_values=True)
    channels = route.channels_for(facts.path_params)
    for key, value in query:
        if key == "channel":
            channels.append(validate_channel(value))
    type_values = [value for key, value in query if key == "type"]
    types: frozenset[str] | None = None
    if type_values and "*" not in type_values:
        types = frozenset(validate_type(t) for t in type_values)
    last_event_id = facts.header(b"last-event-id")
    for key, value in query:
        if key == "last_event_id":
            last_event_id = value
    plain = any(key == "plain" and value not in ("", "0", "false") for key, value in query)
    if last_event_id is not None and not last_event_id.strip():
        last_event_id = None  # an empty Last-Event-ID is no position, not an unknown one
    backfill = route.backfill
    for key, value in query:
        if key == "backfill":
            if not value.isascii() or not value.isdigit() or int(value) > MAX_BACKFILL:
                raise BadRequest(
                    f"backfill is a number of events, 0 to {MAX_BACKFILL}", code="invalid_backfill"
                )
            backfill = int(value)
    if last_event_id is not None and len(last_event_id) > MAX_LAST_EVENT_ID:
        raise BadRequest("Last-Event-ID is too long", code="invalid_last_event_id")
    return StreamRequest(
        tuple(dict.fromkeys(channels)), types, last_event_id, plain, route.message, backfill
    )


def check_origin(node: Node, facts: RequestFacts) -> None:
    """Refuse a browser request from an origin outside the allowlist (403)."""
    if not origin_allowed(
        facts.header(b"origin"), facts.header(b"host"), node.settings.allowed_origins
    ):
        raise Forbidden("this origin may not open streams", code="origin_not_allowed")


async def open_stream(
    node: Node,
    facts: RequestFacts,
    transport: Transport,
    wire: Wire,
    on_ready: Callable[[], None],
    request: StreamRequest,
) -> tuple[Connection, StreamRequest]:
    """Admit a stream request and open its connection; raise :class:`TidingsError` if
    refused. The request returned has the admitted channels."""
    admission = await node.gate.admit(facts, request.channels, transport)
    if transport == "sse" and not admission.channels:
        raise BadRequest("give at least one ?channel=", code="missing_channel")
    connection = node.open_connection(
        transport=transport,
        wire=wire,
        identity=admission.identity,
        peer=facts.peer,
        on_ready=on_ready,
    )
    connection.server_channels.update(admission.server_channels)
    if transport == "sse":
        connection.session.declared_width = len(admission.channels)
    return connection, replace(request, channels=admission.channels)


def refusal(exc: TidingsError) -> tuple[str, int, str]:
    """How a refused WebSocket is told why: the ``error`` message, close code and reason.

    It is accepted first, then closed: browsers cannot read an HTTP status from a refused
    handshake, but they do see the close code and reason.
    """
    return error_frame(exc), int(protocol.refusal_code(exc.status)), close_reason(exc.message)


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame's reason (123 bytes of UTF-8), never mid-character."""
    return text.encode()[:123].decode("utf-8", "ignore")
