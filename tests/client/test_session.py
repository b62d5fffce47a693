"""The client's Sans-I/O protocol state: strings and bytes in, actions out."""

from __future__ import annotations

import orjson

from tidings.client.session import (
    Closing,
    Deliver,
    ErrorNotice,
    Opened,
    Reply,
    ResetNotice,
    Send,
    SSEStreamSession,
    Subscribed,
    SubscribeDeferred,
    SubscribeFailed,
    WebSocketSession,
    close_reason,
    should_reconnect,
)
from tidings.core import sse


def _event(n: int, channel: str = "alerts", epoch: str = "abc123") -> dict[str, object]:
    return {
        "id": f"{epoch}-{n}",
        "channel": channel,
        "type": "disk_full",
        "data": {"n": n},
        "timestamp": "2026-11-23T12:00:00.000Z",
    }


def _ws(message: dict[str, object]) -> str:
    return orjson.dumps(message).decode()


def _sent(action: object) -> dict[str, object]:
    """A Send's message without its request id (fresh on every subscribe)."""
    assert isinstance(action, Send)
    assert isinstance(action.message.get("id"), str)
    return {k: v for k, v in action.message.items() if k != "id"}


def test_websocket_session_resumes_each_channel_from_its_last_position() -> None:
    session = WebSocketSession()
    assert session.follow("alerts", None) == []  # not open yet: nothing to send
    actions = session.receive(_ws({"type": "connected", "connection_id": "c1"}))
    assert actions[0] == Opened("c1", None)
    assert _sent(actions[1]) == {"type": "subscribe", "channel": "alerts"}
    subscribed = {"type": "subscribed", "channel": "alerts", "recovered": False}
    assert session.receive(_ws({**subscribed, "position": "abc123-4", "id": None})) == [
        Subscribed("alerts", "abc123-4")
    ]
    # No event yet: the next connection resumes from the subscribed position.
    session.lost()
    resend = session.receive(_ws({"type": "connected", "connection_id": "c2"}))[1]
    assert _sent(resend) == {"type": "subscribe", "channel": "alerts", "since": "abc123-4"}
    [deliver] = session.receive(_ws({"type": "event", "data": _event(5)}))
    assert isinstance(deliver, Deliver) and deliver.event.id == "abc123-5"
    session.lost()
    resend = session.receive(_ws({"type": "connected", "connection_id": "c3"}))[1]
    assert _sent(resend) == {"type": "subscribe", "channel": "alerts", "since": "abc123-5"}


def test_websocket_session_drops_replayed_events_and_follows_resets() -> None:
    session = WebSocketSession()
    session.follow("alerts", frozenset({"b", "a"}), since="abc123-2")
    opened = session.receive(_ws({"type": "connected", "connection_id": "c"}))
    assert _sent(opened[1]) == {
        "type": "subscribe",
        "channel": "alerts",
        "since": "abc123-2",
        "types": ["a", "b"],
    }
    assert session.receive(_ws({"type": "event", "data": _event(2)})) == []
    assert len(session.receive(_ws({"type": "event", "data": _event(3)}))) == 1
    reset = {"type": "reset", "channel": "alerts", "reason": "history_gap"}
    assert session.receive(_ws({**reset, "position": "fff000-9"})) == [
        ResetNotice("alerts", "history_gap", "fff000-9")
    ]
    assert session.channels["alerts"].position == "fff000-9"
    # Events of channels nobody follows (the personal channel) are not delivered.
    assert session.receive(_ws({"type": "event", "data": _event(1, "client:bob")})) == []


def test_websocket_session_answers_pings_and_routes_replies() -> None:
    session = WebSocketSession()
    assert session.receive(_ws({"type": "ping", "timestamp": "t"})) == [Send({"type": "pong"})]
    rid = session.request_id()
    pong = {"type": "pong", "timestamp": "t", "id": rid}
    assert session.receive(_ws(pong)) == [Reply(rid, pong)]
    refusal = {"type": "error", "code": "unauthorized", "message": "no", "id": None}
    assert session.receive(_ws(refusal)) == [ErrorNotice("unauthorized", "no")]
    bye = {"type": "disconnect", "reason": "token_revoked", "code": 4004, "reconnect": False}
    assert session.receive(_ws(bye)) == [Closing("token_revoked", False)]


def test_websocket_session_resubscribes_when_the_type_filter_changes() -> None:
    session = WebSocketSession()
    session.follow("alerts", frozenset({"a"}))
    session.receive(_ws({"type": "connected", "connection_id": "c"}))
    session.receive(_ws({"type": "event", "data": _event(7)}))
    assert session.follow("alerts", frozenset({"a"})) == []
    [resubscribe] = session.follow("alerts", None)
    assert _sent(resubscribe) == {"type": "subscribe", "channel": "alerts", "since": "abc123-7"}
    assert session.unfollow("alerts") == [Send({"type": "unsubscribe", "channel": "alerts"})]


def test_websocket_session_routes_a_refused_subscribe_to_its_channel() -> None:
    session = WebSocketSession()
    session.follow("secret", None)
    [_, subscribe] = session.receive(_ws({"type": "connected", "connection_id": "c"}))
    assert isinstance(subscribe, Send)
    refusal = {"type": "error", "code": "forbidden", "message": "no", "id": subscribe.message["id"]}
    assert session.receive(_ws(refusal)) == [SubscribeFailed("secret", "forbidden", "no")]
    assert "secret" not in session.channels


def test_a_passing_refusal_keeps_the_channel_and_is_asked_again() -> None:
    session = WebSocketSession()
    session.follow("alerts", None, since="abc123-4")
    [_, first] = session.receive(_ws({"type": "connected", "connection_id": "c"}))
    assert isinstance(first, Send)
    refusal = {
        "type": "error",
        "code": "unavailable",
        "message": "redis",
        "id": first.message["id"],
    }
    assert session.receive(_ws(refusal)) == [SubscribeDeferred("alerts", "unavailable")]
    assert "alerts" in session.channels
    [again] = session.resubscribe("alerts")
    assert isinstance(again, Send)
    assert again.message["since"] == "abc123-4"
    assert again.message["id"] != first.message["id"]
    assert session.resubscribe("alerts") == []  # one request in flight is enough
    session.lost()
    assert session.resubscribe("alerts") == []  # the next connection subscribes anyway


def test_close_codes_follow_the_table() -> None:
    assert not should_reconnect(4004)
    assert not should_reconnect(4001)
    assert not should_reconnect(1009)
    assert not should_reconnect(4123)  # an application disconnect outside the table
    assert should_reconnect(4000)
    assert should_reconnect(1013)
    assert should_reconnect(1006)
    assert should_reconnect(None)
    assert close_reason(4004) == "token_revoked"
    assert close_reason(1006) == "closed_1006"
    assert close_reason(4999, "bye") == "bye"


def test_sse_session_keeps_the_cursor_from_id_only_frames_across_connections() -> None:
    session = SSEStreamSession("alerts", frozenset({"disk_full"}))
    params, headers = session.request()
    assert ("plain", "1") in params and ("type", "disk_full") in params
    assert "Last-Event-ID" not in headers
    session.opened()
    stream = sse.frame(retry=3000) + sse.comment("connected x") + sse.frame(id="abc123-4")
    # Split anywhere: the decoder is incremental.
    assert session.feed(stream[:7]) == []
    assert session.feed(stream[7:]) == [Subscribed("alerts", "abc123-4")]
    assert session.cursor == "abc123-4"
    session.opened()  # a new connection: a fresh decoder, the same cursor
    assert session.request()[1]["Last-Event-ID"] == "abc123-4"
    body = orjson.dumps(_event(5)).decode()
    reset = '{"channel":"alerts","reason":"history_gap","position":"abc123-5"}'
    actions = session.feed(
        sse.frame(event="reset", data=reset)
        + sse.frame(id="abc123-5", data=body)
        + sse.frame(event="disconnect", data='{"reason":"server_shutdown","reconnect":true}')
    )
    assert actions[0] == Subscribed("alerts", "abc123-5")
    assert actions[1] == ResetNotice("alerts", "history_gap", "abc123-5")
    assert isinstance(actions[2], Deliver) and actions[2].event.data == {"n": 5}
    assert actions[3] == Closing("server_shutdown", True)
