"""Per-channel ordering on one node: each event once, in offset order, gaps noticed.

Brokers may deliver a channel's events out of order (two nodes appended 5 and 6, the
second published first), twice (a redelivery), or not at all (a pub/sub message lost
while a broker reconnected). The hub feeds every event through a :class:`Sequencer`
before fan-out: duplicates are dropped, early events are held until the missing ones
arrive, and a gap is reported so the hub can fill it from the store. A gap the store
cannot fill is given up with :meth:`Sequencer.skip`, and sessions then answer it with
``reset``, so no client is ever left with a silent hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.core.events import Event, Position

__all__ = ["Sequencer"]


@dataclass(slots=True)
class _Track:
    #: ``None`` until :meth:`Sequencer.start` says where the channel stands.
    last: Position | None
    held: dict[int, Event] = field(default_factory=dict)


class Sequencer:
    """Orders the events of the channels a node follows. Pure; see the module docstring."""

    def __init__(self, *, max_held: int = 10_000) -> None:
        self.max_held = max_held
        self._tracks: dict[str, _Track] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self._tracks

    def last(self, channel: str) -> Position | None:
        """The position of the last event released for ``channel``."""
        track = self._tracks.get(channel)
        return track.last if track else None

    def expect(self, channel: str) -> None:
        """Begin following ``channel``; hold its events until :meth:`start` is called.

        A node starts following a channel before it knows where the channel stands (the
        store is read after subscribing, so that nothing falls between the two).
        """
        self._tracks.setdefault(channel, _Track(None))

    def start(self, channel: str, position: Position) -> tuple[list[Event], bool]:
        """The channel stood at ``position`` when first read: release what follows it."""
        track = self._tracks.get(channel)
        if track is None or track.last is not None:
            return [], False
        held, track.held = track.held, {}
        track.last = position
        ready: list[Event] = []
        for offset in sorted(held):
            more, _ = self.feed(held[offset])
            ready.extend(more)
        return ready, bool(track.held)

    def forget(self, channel: str) -> None:
        """Stop following ``channel`` (its last local subscriber left)."""
        self._tracks.pop(channel, None)

    def channels(self) -> list[str]:
        return list(self._tracks)

    def holding(self, channel: str) -> bool:
        """Whether events of ``channel`` wait for missing ones (a gap is open)."""
        track = self._tracks.get(channel)
        return track is not None and bool(track.held)

    def feed(self, event: Event) -> tuple[list[Event], bool]:
        """Take one event; return the events now ready in order, and whether a gap is open.

        The first event of a channel not yet followed starts following it.
        """
        position = event.position
        track = self._tracks.get(event.channel)
        if track is not None and track.last is None:
            track.held[position.offset] = event  # not started yet: hold
            if len(track.held) > self.max_held:
                return self.skip(event.channel), False
            return [], False
        if track is None or track.last is None or track.last.epoch != position.epoch:
            # A channel not expected, or a history that started over: follow from here.
            self._tracks[event.channel] = _Track(position)
            return [event], False
        expected = track.last.offset + 1
        if position.offset < expected or position.offset in track.held:
            return [], bool(track.held)
        if position.offset > expected:
            track.held[position.offset] = event
            if len(track.held) > self.max_held:
                return self.skip(event.channel), False
            return [], True
        ready = [event]
        track.last = position
        self._release(track, ready)
        return ready, bool(track.held)

    def _release(self, track: _Track, ready: list[Event]) -> None:
        held = track.held
        while held and track.last is not None:
            following = held.pop(track.last.offset + 1, None)
            if following is None:
                break
            ready.append(following)
            track.last = following.position

    def skip(self, channel: str) -> list[Event]:
        """Give up on the current gap: release everything held, in order."""
        track = self._tracks.get(channel)
        if track is None or not track.held:
            return []
        ready: list[Event] = []
        for offset in sorted(track.held):
            event = track.held.pop(offset)
            ready.append(event)
            track.last = event.position
        return ready
