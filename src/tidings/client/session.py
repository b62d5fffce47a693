"""The client side of the wire protocols, Sans-I/O (SPEC §4, §5).

:class:`WebSocketSession` and :class:`SSEStreamSession` hold what a connection must
remember across reconnects (per-channel positions, the SSE cursor) and turn what the hub
sends into :data:`Action` values: events to deliver, resets, replies, messages to send.
They never touch a socket, a clock or an event loop, so they are tested with strings and
bytes; the transports in :mod:`tidings.client.client` only move bytes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson

from tidings.core.events import Position
from tidings.core.protocol import CLOSE_CODES, CloseCode
from tidings.core.sse import SSEDecoder

__all__ = [
    "Action",
    "ChannelState",
    "Closing",
    "Deliver",
    "ErrorNotice",
    "Event",
    "Opened",
    "Reply",
    "ResetNotice",
    "SSEStreamSession",
    "Send",
    "SubscribeDeferred",
    "SubscribeFailed",
    "Subscribed",
    "WebSocketSession",
    "close_reason",
    "should_reconnect",
]

#: close code -> whether to reconnect, from the one table in :mod:`tidings.core.protocol`.
_RECONNECT_BY_CODE: dict[int, bool] = {int(code): again for code, again in CLOSE_CODES.values()}
_REASON_BY_CODE: dict[int, str] = {}
for _reason, (_code, _again) in CLOSE_CODES.items():
    _REASON_BY_CODE.setdefault(int(_code), _reason)


#: Refusals of a ``subscribe`` that may not hold a moment later: the request is repeated.
PASSING_REFUSALS = frozenset({"unavailable", "rate_limited"})


def should_reconnect(code: int | None) -> bool:
    """Whether a WebSocket closed with ``code`` should be reopened (unknown codes: yes)."""
    if code is None:
        return True
    if code in _RECONNECT_BY_CODE:
        return _RECONNECT_BY_CODE[code]
    # 4000-4999 codes outside the table are application disconnects: 4009's rule.
    return not 4000 <= code <= 4999


def close_reason(code: int | None, reason: str = "") -> str:
    """A short reason for a close: the table's name for ``code``, else the close reason."""
    if code is not None and code in _REASON_BY_CODE:
        return _REASON_BY_CODE[code]
    if reason:
        return reason
    if code is None:
        return "connection_lost"
    try:
        return CloseCode(code).name.lower()
    except ValueError:
        return f"closed_{code}"


def _not_after(event_id: str, position: str | None) -> bool:
    """Whether ``event_id`` is at or before ``position`` in the same history epoch."""
    if position is None:
        return False
    new, old = Position.parse(event_id), Position.parse(position)
    return (
        new is not None and old is not None and new.epoch == old.epoch and new.offset <= old.offset
    )


@dataclass(frozen=True, slots=True)
class Event:
    """One event as the hub delivered it. ``id`` is unique within ``channel`` only."""

    id: str
    channel: str
    type: str
    data: Any
    timestamp: str

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Event:
        """The event of a wire event object (``{"id", "channel", "type", "data", …}``)."""
        return cls(
            id=str(raw["id"]),
            channel=str(raw["channel"]),
            type=str(raw.get("type", "message")),
            data=raw.get("data"),
            timestamp=str(raw.get("timestamp", "")),
        )


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``event`` to the channel's consumers."""

    event: Event


@dataclass(frozen=True, slots=True)
class ResetNotice:
    """The hub could not resume ``channel``; live events continue after ``position``."""

    channel: str
    reason: str
    position: str


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` (a WebSocket JSON object)."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the request the client sent with ``request_id``."""

    request_id: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Opened:
    """The connection is in place (WS ``connected``, or an SSE stream's first frame)."""

    connection_id: str | None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A channel's subscription is in place (WebSocket)."""

    channel: str
    position: str


@dataclass(frozen=True, slots=True)
class SubscribeFailed:
    """The hub refused to subscribe ``channel`` (``forbidden``, …)."""

    channel: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SubscribeDeferred:
    """The hub refused to subscribe ``channel`` for a passing reason (a backend being
    restarted, a rate limit): the channel stays followed; subscribe again after a pause
    with :meth:`WebSocketSession.resubscribe`."""

    channel: str
    code: str


@dataclass(frozen=True, slots=True)
class Closing:
    """The hub announced it is ending the connection (``disconnect``)."""

    reason: str
    reconnect: bool


@dataclass(frozen=True, slots=True)
class ErrorNotice:
    """An ``error`` that answers no request of ours (e.g. a refusal before closing)."""

    code: str
    message: str


Action = (
    Deliver
    | ResetNotice
    | Send
    | Reply
    | Opened
    | Subscribed
    | SubscribeFailed
    | SubscribeDeferred
    | Closing
    | ErrorNotice
)


@dataclass(slots=True)
class ChannelState:
    """What a WebSocket session remembers about one channel.

    ``position`` is the resume point: the last event id seen, else the ``position`` of
    ``subscribed`` or ``reset``, else the ``since`` the application gave (``None``: live
    only). ``types`` is the server-side type filter (``None``: every type).
    """

    types: frozenset[str] | None = None
    position: str | None = None


@dataclass(slots=True)
class WebSocketSession:
    """The client's state for the WebSocket protocol, across reconnections."""

    channels: dict[str, ChannelState] = field(default_factory=dict)
    open: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: request id of each ``subscribe`` sent -> its channel, to route a refusal.
    _subscribing: dict[str, str] = field(default_factory=dict)

    def request_id(self) -> str:
        """A fresh id for a request whose reply the caller waits for."""
        return f"r{next(self._ids)}"

    def follow(
        self, channel: str, types: frozenset[str] | None, since: str | None = None
    ) -> list[Action]:
        """Follow ``channel`` (or change its type filter); what to send now, if open."""
        state = self.channels.get(channel)
        if state is None:
            state = self.channels[channel] = ChannelState(types=types, position=since)
        elif state.types == types:
            return []
        else:
            state.types = types
        return [Send(self._subscribe(channel, state))] if self.open else []

    def resubscribe(self, channel: str) -> list[Action]:
        """Ask again for a deferred subscription, if the channel is still followed and
        the connection open (a new connection subscribes to everything anyway)."""
        state = self.channels.get(channel)
        if state is None or not self.open or channel in self._subscribing.values():
            return []
        return [Send(self._subscribe(channel, state))]

    def unfollow(self, channel: str) -> list[Action]:
        """Stop following ``channel``."""
        if self.channels.pop(channel, None) is None or not self.open:
            return []
        return [Send({"type": "unsubscribe", "channel": channel})]

    def lost(self) -> None:
        """The connection ended; positions are kept for the next one."""
        self.open = False
        self._subscribing.clear()

    def receive(self, text: str | bytes) -> list[Action]:
        """Take one message from the hub; say what follows from it."""
        message = orjson.loads(text)
        if not isinstance(message, dict):
            return []
        kind = message.get("type")
        if kind == "event":
            event = Event.from_wire(message["data"])
            state = self.channels.get(event.channel)
            if state is None:
                # The personal channel, or a channel just unfollowed: nobody listens.
                return []
            if _not_after(event.id, state.position):
                # Already delivered: a replaced subscription replays from our position
                # while the old one's events are still in flight.
                return []
            state.position = event.id
            return [Deliver(event)]
        if kind == "connected":
            self.open = True
            actions: list[Action] = [Opened(message.get("connection_id"), message.get("client_id"))]
            actions += [Send(self._subscribe(c, s)) for c, s in self.channels.items()]
            return actions
        if kind == "subscribed":
            self._subscribing.pop(str(message.get("id")), None)
            state = self.channels.get(message["channel"])
            if state is None:
                return []
            if state.position is None:
                # Subscribed without a since: the stream starts here, so resume from here.
                state.position = str(message["position"])
            return [Subscribed(message["channel"], str(message["position"]))]
        if kind == "reset":
            channel = str(message["channel"])
            state = self.channels.get(channel)
            if state is None:
                return []
            state.position = str(message["position"])
            return [ResetNotice(channel, str(message["reason"]), state.position)]
        if kind == "ping":
            return [Send({"type": "pong"})]
        if kind == "disconnect":
            return [Closing(str(message.get("reason")), bool(message.get("reconnect")))]
        rid = message.get("id")
        if kind == "error" and isinstance(rid, str) and rid in self._subscribing:
            channel = self._subscribing.pop(rid)
            code = str(message.get("code"))
            if channel not in self.channels:
                return []
            if code in PASSING_REFUSALS:
                return [SubscribeDeferred(channel, code)]
            del self.channels[channel]
            return [SubscribeFailed(channel, code, str(message.get("message")))]
        if isinstance(rid, str) and kind in {"published", "pong", "refreshed", "result", "error"}:
            return [Reply(rid, message)]
        if kind == "error":
            return [ErrorNotice(str(message.get("code")), str(message.get("message")))]
        return []

    def _subscribe(self, channel: str, state: ChannelState) -> dict[str, Any]:
        rid = self.request_id()
        self._subscribing[rid] = channel
        message: dict[str, Any] = {"type": "subscribe", "channel": channel, "id": rid}
        if state.position is not None:
            message["since"] = state.position
        if state.types is not None:
            message["types"] = sorted(state.types)
        return message


class SSEStreamSession:
    """The client's state for one SSE stream of ``channel``, across reconnections.

    The stream is requested with ``plain=1`` so that every event frame is unnamed and
    only control frames (``reset``, ``disconnect``) carry an ``event:`` line: an
    application event type called ``reset`` cannot be mistaken for one. ``cursor`` is
    the decoder's ``last_event_id`` (id-only position frames included), sent back as
    ``Last-Event-ID``.
    """

    def __init__(
        self, channel: str, types: frozenset[str] | None = None, since: str | None = None
    ) -> None:
        self.channel = channel
        self.types = types
        self.cursor: str | None = since
        self._decoder = SSEDecoder()
        self._announced = False

    def request(self) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Query parameters and headers of the next request for this stream."""
        params = [("channel", self.channel), ("plain", "1")]
        params += [("type", t) for t in sorted(self.types or ())]
        headers = {"Accept": "text/event-stream"}
        if self.cursor:
            headers["Last-Event-ID"] = self.cursor
        return params, headers

    def opened(self) -> list[Action]:
        """A new response started: parse it from scratch, keeping the cursor."""
        self._decoder = SSEDecoder()
        self._announced = False
        return [Opened(None)]

    def feed(self, chunk: bytes) -> list[Action]:
        """Take bytes of the stream; say what they complete."""
        actions: list[Action] = []
        for message in self._decoder.feed(chunk):
            if message.event == "message":
                event = Event.from_wire(orjson.loads(message.data))
                if event.channel == self.channel:
                    actions.append(Deliver(event))
            elif message.event == "reset":
                body = orjson.loads(message.data)
                if body.get("channel") == self.channel:
                    actions.append(
                        ResetNotice(self.channel, str(body["reason"]), str(body["position"]))
                    )
            elif message.event == "disconnect":
                body = orjson.loads(message.data)
                actions.append(Closing(str(body.get("reason")), bool(body.get("reconnect"))))
        if self._decoder.last_event_id:
            self.cursor = self._decoder.last_event_id
            if not self._announced:
                # The id-only position frame: the stream is in place and resumable.
                self._announced = True
                actions.insert(0, Subscribed(self.channel, self.cursor))
        return actions
