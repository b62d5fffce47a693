"""What a store answers when asked for a channel's history."""

from __future__ import annotations

from dataclasses import dataclass

from tidings.core.events import Event, Position

__all__ = ["ChannelHistory", "HistoryPage"]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Events of one channel, oldest first, and where the channel stands.

    ``complete`` is false when the request asked for events after a position that the
    history no longer reaches back to (evicted, expired, another epoch, or unknown):
    the events returned then are not everything the caller missed. ``position`` is the
    channel's newest position when the page was read.
    """

    events: list[Event]
    complete: bool
    position: Position


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """What a store holds of one channel: how many events, and when the newest was
    published (its timestamp, as in the event)."""

    channel: str
    events: int
    last_event_at: str
