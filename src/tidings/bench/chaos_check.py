"""The checker of ``tidings bench --mode chaos``: was every acknowledged event delivered
once, in order, to every subscriber of its channel? Sans-I/O: fed sequence numbers.

Publishers stamp each event with a per-channel sequence number. A subscriber keeps one
:class:`Trace` per channel: what arrived, in what order, and where the hub said ``reset``.
At the end :meth:`Trace.verdict` compares it with the sequence numbers whose publish was
acknowledged (201 from the hub):

- **lost**: acknowledged, never delivered, and not inside a gap the hub announced;
- **gap**: acknowledged, not delivered, between the last event before a ``reset`` and the
  first after it: the hub said it could not deliver these (counted apart, never lost);
- **duplicates**: delivered more than once;
- **out of order**: delivered after an event with a higher sequence number;
- **unacknowledged**: delivered although its publish was not acknowledged (a publish
  whose answer was lost with a node: stored all the same). Not a fault; reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Trace", "Verdict"]


@dataclass
class Verdict:
    """What one or many traces add up to."""

    delivered: int = 0
    lost: int = 0
    gap: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    unacknowledged: int = 0
    resets: int = 0

    def add(self, other: Verdict) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def clean(self) -> bool:
        """No loss, no duplicate, nothing out of order."""
        return not (self.lost or self.duplicates or self.out_of_order)


@dataclass
class Trace:
    """One subscriber's deliveries on one channel."""

    seen: set[int] = field(default_factory=set)
    highest: int = -1
    duplicates: int = 0
    out_of_order: int = 0
    #: (highest sequence number before the reset, index into ``order`` where it fell).
    resets: list[tuple[int, int]] = field(default_factory=list)
    order: list[int] = field(default_factory=list)

    def deliver(self, seq: int) -> None:
        """An event arrived."""
        if seq in self.seen:
            self.duplicates += 1
            return
        if seq < self.highest:
            self.out_of_order += 1
        self.seen.add(seq)
        self.order.append(seq)
        self.highest = max(self.highest, seq)

    def reset(self) -> None:
        """The hub said events may be missing from here on."""
        self.resets.append((self.highest, len(self.order)))

    def missing(self, acknowledged: Iterable[int]) -> int:
        """How many of ``acknowledged`` have not arrived yet."""
        return sum(1 for seq in acknowledged if seq not in self.seen)

    def verdict(self, acknowledged: Iterable[int]) -> Verdict:
        """Judge the trace against the acknowledged sequence numbers of its channel."""
        acked = set(acknowledged)
        gaps = []
        for before, index in self.resets:
            after = self.order[index] if index < len(self.order) else None
            gaps.append((before, after))
        lost = gap = 0
        for seq in acked - self.seen:
            if any(lo < seq and (hi is None or seq < hi) for lo, hi in gaps):
                gap += 1
            else:
                lost += 1
        return Verdict(
            delivered=len(self.seen),
            lost=lost,
            gap=gap,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            unacknowledged=len(self.seen - acked),
            resets=len(self.resets),
        )
