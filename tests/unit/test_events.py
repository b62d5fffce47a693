"""Events, positions and encodings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core.events import EncodedEvent, Event, Position, format_timestamp, new_epoch
from tidings.core.sse import SSEDecoder


def make_event(**changes: object) -> Event:
    fields: dict[str, object] = {
        "channel": "news",
        "type": "story",
        "data": {"title": "caf\u00e9", "n": [1, 2]},
        "timestamp": "2026-11-23T12:00:00.123Z",
        "position": Position("ab12cd", 7),
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


# --- positions -------------------------------------------------------------------------


def test_position_text_form() -> None:
    assert str(Position("ab12cd", 7)) == "ab12cd-7"
    assert str(Position("ab12cd", 0)) == "ab12cd-0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab12cd-7", Position("ab12cd", 7)),
        ("x-0", Position("x", 0)),
        ("E9-9223372036854775807", Position("E9", 9223372036854775807)),
    ],
)
def test_position_parse(text: str, expected: Position) -> None:
    assert Position.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "7",
        "-7",
        "abc-",
        "abc",
        "abc--1",
        "a-b-1",
        "ab c-1",
        "abc-1.5",
        "abc- 1",
        "abc-1 ",
        "abc-+1",
        "caf\u00e9-1",
        "abc-12345678901234567890",
        "abc-\u00b2",  # a superscript two: isdigit() but not a number int() takes
        "abc-\u0663",  # an Arabic-Indic three: not how a hub writes offsets
        "abc;def-1",
    ],
)
def test_position_parse_refuses_what_is_not_a_position(text: str) -> None:
    assert Position.parse(text) is None


@given(st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True), st.integers(0, 2**62))
def test_position_text_round_trips(epoch: str, offset: int) -> None:
    position = Position(epoch, offset)
    assert Position.parse(str(position)) == position


@given(st.text(max_size=40))
def test_position_parse_never_raises(text: str) -> None:
    parsed = Position.parse(text)
    assert parsed is None or isinstance(parsed, Position)


def test_follows() -> None:
    assert Position("e", 2).follows(Position("e", 1))
    assert not Position("e", 1).follows(Position("e", 1))
    assert not Position("e", 1).follows(Position("e", 2))
    assert not Position("f", 9).follows(Position("e", 1))


def test_new_epochs_are_parseable_and_differ() -> None:
    epochs = {new_epoch() for _ in range(50)}
    assert len(epochs) > 1
    for epoch in epochs:
        assert Position.parse(f"{epoch}-3") == Position(epoch, 3)


# --- timestamps ---------------------------------------------------------------------------


def test_format_timestamp_is_utc_with_milliseconds() -> None:
    when = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    assert format_timestamp(when) == "2026-11-23T12:00:00.123Z"


def test_format_timestamp_converts_to_utc() -> None:
    when = datetime(2026, 11, 23, 14, 30, 5, 9000, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(when) == "2026-11-23T12:30:05.009Z"


# --- events and encodings -------------------------------------------------------------


def test_event_id_is_its_position() -> None:
    assert make_event().id == "ab12cd-7"


def test_to_dict_is_the_spec_event_object() -> None:
    assert make_event().to_dict() == {
        "id": "ab12cd-7",
        "channel": "news",
        "type": "story",
        "data": {"title": "caf\u00e9", "n": [1, 2]},
        "timestamp": "2026-11-23T12:00:00.123Z",
    }


def test_from_dict_round_trips() -> None:
    event = make_event()
    assert Event.from_dict(orjson.loads(orjson.dumps(event.to_dict()))) == event


def test_from_dict_refuses_a_bad_id() -> None:
    raw = make_event().to_dict() | {"id": "not a position"}
    with pytest.raises(ValueError, match="not an event id"):
        Event.from_dict(raw)


def test_events_are_immutable() -> None:
    event = make_event()
    with pytest.raises(AttributeError):
        event.type = "other"  # type: ignore[misc]


def test_encoded_json_is_the_event_object() -> None:
    encoded = EncodedEvent(make_event())
    assert orjson.loads(encoded.json) == make_event().to_dict()
    assert b"\n" not in encoded.json


def test_ws_text_wraps_the_event() -> None:
    encoded = EncodedEvent(make_event())
    assert orjson.loads(encoded.ws_text) == {"type": "event", "data": make_event().to_dict()}


def test_sse_body_with_and_without_event_line() -> None:
    encoded = EncodedEvent(make_event())
    assert encoded.sse_body(plain=False) == b"event: story\ndata: " + encoded.json + b"\n\n"
    assert encoded.sse_body(plain=True) == b"data: " + encoded.json + b"\n\n"


def test_sse_body_decodes_to_the_event_even_with_line_breaks_in_data() -> None:
    encoded = EncodedEvent(make_event(data={"text": "one\ntwo\r\nthree"}))
    messages = list(SSEDecoder().feed(b"id: ab12cd-7\n" + encoded.sse_body(plain=False)))
    assert len(messages) == 1
    assert messages[0].event == "story"
    assert orjson.loads(messages[0].data)["data"] == {"text": "one\ntwo\r\nthree"}


def test_each_encoding_is_computed_once() -> None:
    encoded = EncodedEvent(make_event())
    assert encoded.json is encoded.json
    assert encoded.ws_text is encoded.ws_text
    assert encoded.sse_body(plain=False) is encoded.sse_body(plain=False)
    assert encoded.sse_body(plain=True) is encoded.sse_body(plain=True)
