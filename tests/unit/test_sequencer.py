"""The per-channel sequencer: once, in order, gaps reported and given up explicitly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.core.events import Event, Position
from tidings.core.sequencer import Sequencer


def ev(offset: int, channel: str = "c", epoch: str = "e1") -> Event:
    return Event(channel, "t", offset, "2026-01-01T00:00:00.000Z", Position(epoch, offset))


def offsets(events: list[Event]) -> list[int]:
    return [e.position.offset for e in events]


def test_in_order_events_pass_straight_through() -> None:
    seq = Sequencer()
    for n in range(1, 6):
        ready, gap = seq.feed(ev(n))
        assert offsets(ready) == [n]
        assert gap is False
    assert seq.last("c") == Position("e1", 5)


def test_duplicates_are_dropped() -> None:
    seq = Sequencer()
    seq.feed(ev(1))
    seq.feed(ev(2))
    assert seq.feed(ev(2)) == ([], False)
    assert seq.feed(ev(1)) == ([], False)


def test_early_events_are_held_until_the_gap_closes() -> None:
    seq = Sequencer()
    seq.feed(ev(1))
    assert seq.feed(ev(3)) == ([], True)
    assert seq.feed(ev(4)) == ([], True)
    assert seq.feed(ev(3)) == ([], True)  # a held duplicate changes nothing
    ready, gap = seq.feed(ev(2))
    assert offsets(ready) == [2, 3, 4]
    assert gap is False


def test_skip_releases_held_events_in_order() -> None:
    seq = Sequencer()
    seq.feed(ev(1))
    seq.feed(ev(5))
    seq.feed(ev(3))
    assert offsets(seq.skip("c")) == [3, 5]
    assert seq.last("c") == Position("e1", 5)
    assert seq.skip("c") == []


def test_a_new_epoch_starts_over_and_forget_stops_following() -> None:
    seq = Sequencer()
    seq.feed(ev(7))
    ready, _ = seq.feed(ev(1, epoch="e2"))
    assert offsets(ready) == [1]
    seq.forget("c")
    assert "c" not in seq
    assert seq.last("c") is None


def test_too_many_held_events_are_released_rather_than_kept() -> None:
    seq = Sequencer(max_held=3)
    seq.feed(ev(1))
    for n in (3, 4, 5):
        assert seq.feed(ev(n)) == ([], True)
    ready, gap = seq.feed(ev(6))
    assert offsets(ready) == [3, 4, 5, 6]
    assert gap is False


@given(st.permutations(list(range(2, 40))), st.lists(st.integers(2, 39), max_size=20))
def test_any_arrival_order_with_redeliveries_is_released_once_in_order(
    order: list[int], again: list[int]
) -> None:
    seq = Sequencer()
    released = offsets(seq.feed(ev(1))[0])
    for n in order + again:
        released += offsets(seq.feed(ev(n))[0])
    assert released == list(range(1, 40))


def test_a_channel_expected_holds_events_until_its_start_position_is_known() -> None:
    seq = Sequencer()
    seq.expect("c")
    assert seq.feed(ev(7)) == ([], False)  # arrived before event 6, and before the read
    assert seq.feed(ev(5)) == ([], False)
    ready, gap = seq.start("c", Position("e1", 5))  # the store stood at 5 when read
    assert ready == []  # 5 is history; 7 waits for 6
    assert gap is True
    ready, gap = seq.feed(ev(6))
    assert offsets(ready) == [6, 7]
    assert gap is False
    assert seq.start("c", Position("e1", 99)) == ([], False)  # only the first read counts
