"""Events, their positions in a channel, and their encodings.

An :class:`Event` is what the hub stores and delivers. Its ``id`` is the text form of
its :class:`Position`: the channel history's *epoch* (which changes when a history is
lost, so that old ids are never mistaken for new ones) and a per-channel *offset* that
grows by one per event. Positions are what make resume exact.

:class:`EncodedEvent` carries the encodings of one event so that fan-out serialises an
event once per wire format, never once per subscriber.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from tidings.core import websocket

__all__ = [
    "EncodedEvent",
    "Event",
    "Position",
    "Publication",
    "format_timestamp",
    "new_epoch",
]


def format_timestamp(when: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: ``2026-11-23T12:00:00.123Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


_second_cache: list[Any] = [-1, ""]


def now_timestamp() -> str:
    """:func:`format_timestamp` of the current time, cheaply: the part up to the second
    is formatted once per second (publishing stamps every event)."""
    now = time.time()
    second = int(now)
    cache = _second_cache
    if cache[0] != second:
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        cache[0] = second
    return f"{cache[1]}{int((now - second) * 1000):03d}Z"


class Publication(NamedTuple):
    """One event to publish, as the HTTP API, the embedding API and sources take it.

    A named tuple: immutable, and cheap to make once per published event.
    """

    channel: str
    type: str = "message"
    data: Any = None
    idempotency_key: str | None = None


def new_epoch() -> str:
    """A short random epoch for a newly created channel history."""
    return secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class Position:
    """A place in one channel's history: after the event with this ``offset``.

    ``offset`` 0 means "before the first event". Text form: ``<epoch>-<offset>``.
    """

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position | None:
        """Parse ``<epoch>-<offset>``; ``None`` when ``text`` is not a position."""
        epoch, sep, offset = text.rpartition("-")
        if not sep or not epoch or not epoch.isalnum() or not epoch.isascii():
            return None
        # isascii: str.isdigit() also accepts non-ASCII digits, some of which int() refuses.
        if not offset.isascii() or not offset.isdigit() or len(offset) > 19:
            return None
        value = int(offset)
        # Offsets are stored as signed 64-bit integers by SQLite and Redis.
        return cls(epoch, value) if value < 2**63 else None

    def follows(self, other: Position) -> bool:
        """True when this position is in the same history and after ``other``."""
        return self.epoch == other.epoch and self.offset > other.offset


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event (SPEC §1). Immutable once the store has assigned its position."""

    channel: str
    type: str
    data: Any
    timestamp: str
    position: Position

    @property
    def id(self) -> str:
        """The event id: its position's text form, unique within the channel."""
        return str(self.position)

    def to_dict(self) -> dict[str, Any]:
        """The event object of SPEC §1."""
        return {
            "id": self.id,
            "channel": self.channel,
            "type": self.type,
            "data": self.data,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Rebuild an event from :meth:`to_dict` output (as stores and brokers keep it)."""
        position = Position.parse(str(raw["id"]))
        if position is None:
            raise ValueError(f"not an event id: {raw['id']!r}")
        return cls(
            channel=raw["channel"],
            type=raw["type"],
            data=raw.get("data"),
            timestamp=raw["timestamp"],
            position=position,
        )


@dataclass(slots=True)
class EncodedEvent:
    """An event with each wire encoding computed at most once, on first use."""

    event: Event
    _json: bytes | None = field(default=None, repr=False)
    _ws: str | None = field(default=None, repr=False)
    _sse: bytes | None = field(default=None, repr=False)
    _sse_plain: bytes | None = field(default=None, repr=False)
    _ws_frame: bytes | None = field(default=None, repr=False)
    _sse_single: bytes | None = field(default=None, repr=False)
    _sse_single_plain: bytes | None = field(default=None, repr=False)
    _ws_data: str | None = field(default=None, repr=False)
    _ws_data_frame: bytes | None = field(default=None, repr=False)
    _sse_data: bytes | None = field(default=None, repr=False)

    @property
    def json(self) -> bytes:
        """The event object as compact JSON."""
        if self._json is None:
            self._json = orjson.dumps(self.event.to_dict())
        return self._json

    @property
    def ws_text(self) -> str:
        """The WebSocket message ``{"type":"event","data":{event}}``."""
        if self._ws is None:
            self._ws = '{"type":"event","data":' + self.json.decode() + "}"
        return self._ws

    @property
    def ws_frame(self) -> bytes:
        """:attr:`ws_text` as a complete WebSocket text frame: server frames are not
        masked, so every subscriber gets the very same bytes."""
        if self._ws_frame is None:
            self._ws_frame = websocket.text_frame(self.ws_text)
        return self._ws_frame

    @property
    def ws_data_text(self) -> str:
        """The WebSocket message of a ``message="data"`` route: ``{"type":"event",
        "data": <the event's data>}``."""
        if self._ws_data is None:
            self._ws_data = '{"type":"event","data":' + orjson.dumps(self.event.data).decode() + "}"
        return self._ws_data

    @property
    def ws_data_frame(self) -> bytes:
        """:attr:`ws_data_text` as a complete WebSocket text frame."""
        if self._ws_data_frame is None:
            self._ws_data_frame = websocket.text_frame(self.ws_data_text)
        return self._ws_data_frame

    @property
    def sse_data_body(self) -> bytes:
        """The SSE frame of a ``message="data"`` route without its ``id:`` line: the
        event's type as the SSE event name, its data as the frame's data."""
        if self._sse_data is None:
            data = orjson.dumps(self.event.data)
            self._sse_data = b"event: " + self.event.type.encode() + b"\ndata: " + data + b"\n\n"
        return self._sse_data

    def sse_frame(self, *, plain: bool) -> bytes:
        """The whole SSE frame for a one-channel stream, whose cursor is the event id."""
        if plain:
            if self._sse_single_plain is None:
                self._sse_single_plain = self._id_line() + self.sse_body(plain=True)
            return self._sse_single_plain
        if self._sse_single is None:
            self._sse_single = self._id_line() + self.sse_body(plain=False)
        return self._sse_single

    def _id_line(self) -> bytes:
        return b"id: " + self.event.id.encode() + b"\n"

    def sse_body(self, *, plain: bool) -> bytes:
        """The SSE frame without its ``id:`` line (which is per stream), ending the frame."""
        if plain:
            if self._sse_plain is None:
                self._sse_plain = b"data: " + self.json + b"\n\n"
            return self._sse_plain
        if self._sse is None:
            self._sse = b"event: " + self.event.type.encode() + b"\ndata: " + self.json + b"\n\n"
        return self._sse
