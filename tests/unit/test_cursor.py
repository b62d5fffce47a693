"""The SSE resume cursor: one string holding a position for every channel of a stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.core.cursor import decode_cursor, encode_cursor
from tidings.core.events import Position


def test_single_channel_cursor_is_the_bare_position() -> None:
    assert encode_cursor({"news": Position("ab12", 7)}) == "ab12-7"


def test_multi_channel_cursor_names_each_channel() -> None:
    cursor = encode_cursor({"a": Position("e1", 3), "tenant:x/b": Position("e2", 0)})
    assert cursor == "a;e1-3,tenant:x/b;e2-0"


def test_bare_cursor_resumes_a_single_channel_stream() -> None:
    assert decode_cursor("ab12-7", ["news"]) == {"news": "ab12-7"}


def test_bare_cursor_is_stripped() -> None:
    assert decode_cursor("  ab12-7 ", ["news"]) == {"news": "ab12-7"}


def test_bare_cursor_means_nothing_for_several_channels() -> None:
    # A bare position cannot say which channel it belongs to: every channel resets.
    assert decode_cursor("ab12-7", ["a", "b"]) == {"a": "", "b": ""}


def test_multi_channel_cursor_in_any_order() -> None:
    assert decode_cursor("b;e2-5,a;e1-3", ["a", "b"]) == {"a": "e1-3", "b": "e2-5"}


def test_multi_channel_cursor_tolerates_spaces() -> None:
    assert decode_cursor(" a;e1-3 , b;e2-5 ", ["a", "b"]) == {"a": "e1-3", "b": "e2-5"}


def test_channel_missing_from_the_cursor_maps_to_unknown() -> None:
    assert decode_cursor("a;e1-3", ["a", "c"]) == {"a": "e1-3", "c": ""}


def test_extra_channels_in_the_cursor_are_ignored() -> None:
    assert decode_cursor("a;e1-3,z;e9-9", ["a"]) == {"a": "e1-3"}


def test_multi_channel_cursor_resumes_a_single_channel_stream() -> None:
    assert decode_cursor("a;e1-3,b;e2-5", ["b"]) == {"b": "e2-5"}


def test_empty_cursor() -> None:
    assert decode_cursor("", ["a"]) == {"a": ""}
    assert decode_cursor("", ["a", "b"]) == {"a": "", "b": ""}


def test_garbage_does_not_raise() -> None:
    assert decode_cursor(";;,,;", ["a", "b"]) == {"a": "", "b": ""}


channel_names = st.from_regex(r"[A-Za-z0-9_\-.:/@=]{1,30}", fullmatch=True)
positions = st.builds(
    Position, st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), st.integers(0, 10**12)
)


@given(st.dictionaries(channel_names, positions, min_size=1, max_size=8))
def test_cursor_round_trips(channel_positions: dict[str, Position]) -> None:
    cursor = encode_cursor(channel_positions)
    decoded = decode_cursor(cursor, list(channel_positions))
    assert decoded == {channel: str(p) for channel, p in channel_positions.items()}


@given(st.text(max_size=60), st.lists(channel_names, min_size=1, max_size=4, unique=True))
def test_decode_never_raises(cursor: str, channels: list[str]) -> None:
    decoded = decode_cursor(cursor, channels)
    assert set(decoded) == set(channels)
