"""The WebSocket message protocol: every client message, every error, the server messages."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core import protocol
from tidings.core.protocol import (
    CLOSE_CODES,
    ClientMessage,
    CloseCode,
    Command,
    Ping,
    Pong,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    close_code_for,
    parse,
)
from tidings.errors import BadRequest, InvalidChannel, InvalidEvent, ProtocolError


def message(**fields: Any) -> str:
    return json.dumps(fields)


def parse_error(raw: str | bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(raw)
    return caught.value


# --- every message type ------------------------------------------------------------------


def test_subscribe_minimal() -> None:
    assert parse(message(type="subscribe", channel="news")) == Subscribe("news")


def test_subscribe_with_everything() -> None:
    parsed = parse(
        message(
            type="subscribe", channel="tenant:acme/alerts", since="ab12-7", types=["a", "b"], id=3
        )
    )
    assert parsed == Subscribe("tenant:acme/alerts", "ab12-7", frozenset({"a", "b"}), 3)


@pytest.mark.parametrize("types", [["*"], ["a", "*"], []])
def test_subscribe_types_that_mean_all(types: list[str]) -> None:
    parsed = parse(message(type="subscribe", channel="c", types=types))
    assert isinstance(parsed, Subscribe)
    assert parsed.types is None


def test_subscribe_null_since_and_types() -> None:
    assert parse(message(type="subscribe", channel="c", since=None, types=None)) == Subscribe("c")


def test_unsubscribe() -> None:
    assert parse(message(type="unsubscribe", channel="c", id="u1")) == Unsubscribe("c", "u1")


def test_publish() -> None:
    parsed = parse(message(type="publish", channel="c", event="job.done", data={"x": [1]}, id=9))
    assert parsed == Publish("c", "job.done", {"x": [1]}, 9)


def test_publish_type_defaults_to_message() -> None:
    assert parse(message(type="publish", channel="c", data=1)) == Publish("c", "message", 1)


def test_publish_null_data_is_data() -> None:
    assert parse(message(type="publish", channel="c", data=None)) == Publish("c", "message", None)


def test_ping_and_pong() -> None:
    assert parse(message(type="ping")) == Ping()
    assert parse(message(type="ping", id=1)) == Ping(1)
    assert parse(message(type="pong")) == Pong()


def test_refresh() -> None:
    assert parse(message(type="refresh", token="t.o.k", id="r")) == Refresh("t.o.k", "r")


def test_command() -> None:
    parsed = parse(message(type="command", name="job.cancel", args={"job": 4}, id=2))
    assert parsed == Command("job.cancel", {"job": 4}, 2)


def test_command_args_default_to_empty() -> None:
    assert parse(message(type="command", name="job.list")) == Command("job.list", {})


def test_bytes_are_accepted() -> None:
    assert parse(b'{"type":"ping","id":"b"}') == Ping("b")


def test_unknown_fields_are_ignored() -> None:
    assert parse(message(type="ping", extra=[1, 2])) == Ping()


def test_messages_are_frozen() -> None:
    parsed = parse(message(type="subscribe", channel="c"))
    with pytest.raises(AttributeError):
        parsed.channel = "other"  # type: ignore[misc]


# --- every error -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "not json", "{", '{"type": "ping"', b"\xff\xfe", "[1,]"])
def test_invalid_json(raw: str | bytes) -> None:
    error = parse_error(raw)
    assert isinstance(error, ProtocolError)
    assert error.code == "invalid_json"
    assert error.request_id is None


@pytest.mark.parametrize("raw", ["[]", '["subscribe"]', "1", '"ping"', "null", "true"])
def test_non_object(raw: str) -> None:
    error = parse_error(raw)
    assert isinstance(error, ProtocolError)
    assert error.code == "invalid_message"


@pytest.mark.parametrize("kind", ["subscribe!", "SUBSCRIBE", "event", 5, True, [], {}])
def test_unknown_type_carries_the_request_id(kind: object) -> None:
    error = parse_error(message(type=kind, id=7))
    assert isinstance(error, ProtocolError)
    assert error.code == "unknown_type"
    assert error.request_id == 7


def test_unknown_type_message_does_not_echo_long_input() -> None:
    error = parse_error(message(type="x" * 1000))
    assert error.code == "unknown_type"
    assert "x" * 41 not in error.message


@pytest.mark.parametrize("fields", [{}, {"type": None}])
def test_missing_type(fields: dict[str, Any]) -> None:
    error = parse_error(message(**fields, id="q"))
    assert error.code == "missing_field"
    assert error.request_id == "q"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "subscribe"}, "channel"),
        ({"type": "unsubscribe"}, "channel"),
        ({"type": "publish", "data": 1}, "channel"),
        ({"type": "publish", "channel": "c"}, "data"),
        ({"type": "refresh"}, "token"),
        ({"type": "command"}, "name"),
        ({"type": "subscribe", "channel": None}, "channel"),
    ],
)
def test_missing_fields(fields: dict[str, Any], field: str) -> None:
    error = parse_error(message(**fields, id=11))
    assert isinstance(error, ProtocolError)
    assert error.code == "missing_field"
    assert field in error.message
    assert error.request_id == 11


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "subscribe", "channel": 5},
        {"type": "subscribe", "channel": ["c"]},
        {"type": "subscribe", "channel": "c", "since": 5},
        {"type": "subscribe", "channel": "c", "since": {"c": "e-1"}},
        {"type": "subscribe", "channel": "c", "types": "a"},
        {"type": "subscribe", "channel": "c", "types": ["a", 1]},
        {"type": "subscribe", "channel": "c", "types": {"a": 1}},
        {"type": "unsubscribe", "channel": True},
        {"type": "publish", "channel": 1, "data": 1},
        {"type": "refresh", "token": 123},
        {"type": "command", "name": ["x"]},
        {"type": "command", "name": "x", "args": [1]},
        {"type": "command", "name": "x", "args": "a=1"},
        {"type": "command", "name": "x", "args": None},
    ],
)
def test_bad_field_types(fields: dict[str, Any]) -> None:
    error = parse_error(message(**fields, id="r1"))
    assert isinstance(error, ProtocolError)
    assert error.code == "invalid_field"
    assert error.request_id == "r1"


@pytest.mark.parametrize(
    "channel", ["", "has space", "caf\u00e9", "a;b", "a,b", "new\nline", "x" * 201, "#hash"]
)
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish"])
def test_invalid_channel_names(kind: str, channel: str) -> None:
    error = parse_error(message(type=kind, channel=channel, data=1, id=5))
    assert isinstance(error, InvalidChannel)
    assert error.code == "invalid_channel"
    assert error.request_id == 5


@pytest.mark.parametrize("event", ["", "has space", "a@b", "x" * 101, 7, None, "line\nbreak"])
def test_invalid_publish_event_type(event: object) -> None:
    error = parse_error(message(type="publish", channel="c", event=event, data=1, id=6))
    assert isinstance(error, InvalidEvent)
    assert error.code == "invalid_type"
    assert error.request_id == 6


@pytest.mark.parametrize("types", [["ok", "not ok"], [""], ["x" * 101]])
def test_invalid_subscribe_types(types: list[str]) -> None:
    error = parse_error(message(type="subscribe", channel="c", types=types, id=8))
    assert isinstance(error, InvalidEvent)
    assert error.code == "invalid_type"
    assert error.request_id == 8


@pytest.mark.parametrize("rid", [True, False, 1.5, [1], {"a": 1}, "x" * 101])
def test_invalid_request_id(rid: object) -> None:
    error = parse_error(message(type="ping", id=rid))
    assert isinstance(error, ProtocolError)
    assert error.code == "invalid_id"
    assert error.request_id is None


@pytest.mark.parametrize("rid", [0, -3, 2**53, "", "x" * 100, "\u2603"])
def test_valid_request_ids(rid: str | int) -> None:
    assert parse(message(type="ping", id=rid)) == Ping(rid)


def test_invalid_id_wins_over_other_errors() -> None:
    # The error must not name an id the client did not send correctly.
    error = parse_error(message(type="subscribe", id=[1]))
    assert error.code == "invalid_id"


def test_errors_serialise_for_the_wire() -> None:
    error = parse_error(message(type="unsubscribe", id=3))
    wire = protocol.error_message(error.code, error.message, error.request_id)
    assert wire == {"type": "error", "code": "missing_field", "message": error.message, "id": 3}


# --- server messages and close codes -----------------------------------------------------


def test_encode_is_compact_json() -> None:
    text = protocol.encode(protocol.ping_message("2026-01-01T00:00:00.000Z"))
    assert text == '{"type":"ping","timestamp":"2026-01-01T00:00:00.000Z"}'


def test_server_messages() -> None:
    assert protocol.connected_message("cn", "alice", "t") == {
        "type": "connected",
        "connection_id": "cn",
        "client_id": "alice",
        "timestamp": "t",
    }
    assert protocol.subscribed_message("c", recovered=True, position="e-3", rid=1) == {
        "type": "subscribed",
        "channel": "c",
        "recovered": True,
        "position": "e-3",
        "id": 1,
    }
    assert protocol.unsubscribed_message("c", None) == {
        "type": "unsubscribed",
        "channel": "c",
        "id": None,
    }
    assert protocol.reset_message("c", "history_gap", "e-4") == {
        "type": "reset",
        "channel": "c",
        "reason": "history_gap",
        "position": "e-4",
    }
    assert protocol.pong_message("t", 2) == {"type": "pong", "timestamp": "t", "id": 2}
    assert protocol.result_message({"ok": True}, "r") == {
        "type": "result",
        "data": {"ok": True},
        "id": "r",
    }
    assert protocol.published_message({"id": "e-1"}, 4) == {
        "type": "published",
        "event": {"id": "e-1"},
        "id": 4,
    }


@pytest.mark.parametrize(
    ("reason", "code", "reconnect"),
    [
        ("server_shutdown", 4000, True),
        ("token_expired", 4002, True),
        ("token_revoked", 4004, False),
        ("slow_consumer", 4005, True),
        ("stale", 4006, True),
        ("unauthorized", 4001, False),
        ("message_too_big", 1009, False),
    ],
)
def test_disconnect_message_and_close_code(reason: str, code: int, reconnect: bool) -> None:
    assert close_code_for(reason) == code
    assert protocol.disconnect_message(reason) == {
        "type": "disconnect",
        "reason": reason,
        "code": code,
        "reconnect": reconnect,
    }


def test_unknown_disconnect_reason_does_not_reconnect() -> None:
    assert close_code_for("no such reason") == CloseCode.DISCONNECTED
    assert protocol.disconnect_message("no such reason")["reconnect"] is False


def test_application_close_codes_are_in_the_4000_range() -> None:
    # Two standard codes say exactly what is meant: 1009 (too big), 1013 (try again later).
    standard = {"message_too_big": 1009, "unavailable": 1013}
    for reason, (code, _) in CLOSE_CODES.items():
        if reason in standard:
            assert code == standard[reason]
        else:
            assert 4000 <= code < 5000, reason


# --- properties ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
plausible_keys = st.sampled_from(
    ["type", "channel", "since", "types", "id", "event", "data", "token", "name", "args"]
)
plausible_values = st.one_of(
    st.sampled_from(
        [
            "subscribe",
            "unsubscribe",
            "publish",
            "ping",
            "pong",
            "refresh",
            "command",
            "news",
            "a b",
            "*",
            "",
            "abc-1",
        ]
    ),
    st.lists(st.sampled_from(["a", "*", "", "b c", 1]), max_size=3),
    json_values,
)
plausible_messages = st.dictionaries(plausible_keys, plausible_values, max_size=7)


def check_parse(raw: str | bytes) -> None:
    try:
        parsed = parse(raw)
    except BadRequest as exc:
        error = exc
    else:
        assert isinstance(parsed, ClientMessage)
        return
    assert error.code
    assert error.request_id is None or isinstance(error.request_id, str | int)


@given(json_values)
def test_random_json_values_parse_or_fail_cleanly(value: Any) -> None:
    check_parse(orjson.dumps(value))


@given(plausible_messages)
def test_random_plausible_messages_parse_or_fail_cleanly(fields: dict[str, Any]) -> None:
    check_parse(orjson.dumps(fields).decode())


@given(st.text())
def test_random_text_parses_or_fails_cleanly(text: str) -> None:
    check_parse(text)


@given(st.binary())
def test_random_bytes_parse_or_fail_cleanly(raw: bytes) -> None:
    check_parse(raw)
