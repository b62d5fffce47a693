"""Resume cursors for streams that carry several channels.

A WebSocket client resumes each channel with the id of the last event it saw there.
An SSE stream has a single ``id:`` field that the browser sends back as
``Last-Event-ID``, so that one string must hold a position for *every* channel of the
stream. This module is that string's format:

* a stream of one channel: the bare position, which is the last event's id;
* several channels: ``<channel>;<position>`` pairs joined by ``,`` (channel names never
  contain ``;`` or ``,``), in any order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tidings.core.events import Position

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(positions: Mapping[str, Position], *, channels: int | None = None) -> str:
    """The cursor of a stream whose channels stand at ``positions``.

    ``channels`` is how many channels the stream has (default: one per position). A
    stream of several channels never gets the bare form, even while only one of them has
    a position yet: a bare position could not say which channel it is for.
    """
    if len(positions) == 1 and (channels is None or channels == 1):
        return str(next(iter(positions.values())))
    return ",".join(f"{channel};{position}" for channel, position in positions.items())


def decode_cursor(cursor: str, channels: Iterable[str]) -> dict[str, str]:
    """Map each of ``channels`` to the position ``cursor`` holds for it.

    A channel the cursor says nothing about maps to ``""``, which no history knows: the
    hub answers it with ``reset``, so a client is told rather than left with a hole.
    """
    wanted = list(channels)
    if ";" not in cursor:
        # A bare position only means something for a single-channel stream.
        bare = cursor.strip() if len(wanted) == 1 else ""
        return dict.fromkeys(wanted, bare)
    found: dict[str, str] = {}
    for part in cursor.split(","):
        channel, _, position = part.strip().partition(";")
        found[channel] = position
    return {channel: found.get(channel, "") for channel in wanted}
