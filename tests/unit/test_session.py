"""The per-connection session: states, subscriptions, the resume seam and the outbox bounds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tidings.core.cursor import decode_cursor
from tidings.core.events import EncodedEvent, Event, Position
from tidings.core.history import HistoryPage
from tidings.core.session import TRANSITIONS, Session, State
from tidings.core.sse import SSEDecoder, SSEMessage
from tidings.core.wire import SSEWire, WebSocketWire
from tidings.errors import IllegalTransition

EPOCH = "ep1"


def event(
    offset: int, channel: str = "news", type_: str = "story", epoch: str = EPOCH
) -> EncodedEvent:
    return EncodedEvent(
        Event(channel, type_, {"n": offset}, "2026-01-01T00:00:00.000Z", Position(epoch, offset))
    )


def page(
    *offsets: int, top: int | None = None, complete: bool = True, channel: str = "news"
) -> HistoryPage:
    events = [event(offset, channel).event for offset in offsets]
    newest = top if top is not None else (offsets[-1] if offsets else 0)
    return HistoryPage(events, complete, Position(EPOCH, newest))


def ws_session(**options: Any) -> Session:
    session = Session(WebSocketWire(), **options)
    session.open()
    return session


def subscribed(session: Session, channel: str = "news", at: int = 0, **options: Any) -> Session:
    """Settle a fresh subscription at offset ``at`` and forget its frames."""
    session.begin_subscribe(channel, **options)
    session.finish_subscribe(channel, page(top=at, channel=channel))
    session.take_frames()
    return session


def messages(session: Session) -> list[dict[str, Any]]:
    frames = session.take_frames()
    assert all(isinstance(frame, str) for frame in frames)
    return [json.loads(frame) for frame in frames]


def summary(session: Session) -> list[tuple[Any, ...]]:
    """Each queued WebSocket message, reduced to what the tests compare."""
    return summarize(messages(session))


def summarize(queued: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for message in queued:
        kind = message["type"]
        if kind == "event":
            out.append(("event", message["data"]["channel"], message["data"]["id"]))
        elif kind == "reset":
            out.append(("reset", message["channel"], message["reason"]))
        elif kind == "subscribed":
            out.append(("subscribed", message["channel"], message["recovered"]))
        elif kind == "disconnect":
            out.append(("disconnect", message["reason"]))
        else:
            out.append((kind,))
    return out


def ids(*offsets: int, channel: str = "news") -> list[tuple[str, str, str]]:
    return [("event", channel, f"{EPOCH}-{offset}") for offset in offsets]


# --- states ------------------------------------------------------------------------------


def test_a_new_session_is_connecting_and_opens() -> None:
    session = Session(WebSocketWire())
    assert session.state is State.CONNECTING
    assert session.alive
    session.open()
    assert session.state is State.OPEN
    assert session.alive


def test_close_then_closed() -> None:
    session = ws_session()
    session.close("server_shutdown")
    assert session.state is State.CLOSING
    assert not session.alive
    assert session.close_reason == "server_shutdown"
    session.closed()
    assert session.state is State.CLOSED


def test_a_connecting_session_may_close_or_vanish() -> None:
    closing = Session(WebSocketWire())
    closing.close("unauthorized")
    assert closing.state is State.CLOSING
    vanished = Session(WebSocketWire())
    vanished.closed()
    assert vanished.state is State.CLOSED


def to_state(target: State) -> Session:
    session = Session(WebSocketWire())
    if target is not State.CONNECTING:
        session.open()
    if target in (State.CLOSING, State.CLOSED):
        session.close("server_shutdown")
    if target is State.CLOSED:
        session.closed()
    assert session.state is target
    return session


@pytest.mark.parametrize("state", [State.OPEN, State.CLOSING, State.CLOSED])
def test_open_is_illegal_once_opened(state: State) -> None:
    session = to_state(state)
    with pytest.raises(IllegalTransition, match=f"from {state.value} to open"):
        session.open()
    assert session.state is state


def test_transition_table_matches_the_diagram() -> None:
    expected = {
        State.CONNECTING: {State.OPEN, State.CLOSING, State.CLOSED},
        State.OPEN: {State.CLOSING, State.CLOSED},
        State.CLOSING: {State.CLOSED},
        State.CLOSED: set(),
    }
    assert expected == TRANSITIONS


def test_close_is_idempotent_and_keeps_the_first_reason() -> None:
    session = ws_session()
    session.close("token_expired")
    session.close("server_shutdown")
    assert session.close_reason == "token_expired"
    assert summary(session) == [("disconnect", "token_expired")]


def test_closed_is_idempotent_and_forgets_everything() -> None:
    session = subscribed(ws_session())
    session.deliver(event(1))
    session.closed()
    session.closed()
    assert session.state is State.CLOSED
    assert session.take_frames() == []
    assert list(session.subscriptions) == []


def test_a_graceful_close_sends_what_is_queued_then_the_disconnect() -> None:
    # Deliver, then disconnect: an event published to the client just before (its
    # `token_revoked` notice, say) reaches it.
    session = subscribed(ws_session())
    for offset in (1, 2):
        session.deliver(event(offset))
    session.close("token_revoked")
    got = messages(session)
    assert [m["type"] for m in got] == ["event", "event", "disconnect"]
    assert got[-1] == {
        "type": "disconnect",
        "reason": "token_revoked",
        "code": 4004,
        "reconnect": False,
    }


def test_a_slow_consumer_close_discards_the_queue_and_sends_the_disconnect_alone() -> None:
    session = subscribed(ws_session())
    for offset in (1, 2, 3):
        session.deliver(event(offset))
    session.push_control('{"type":"pong"}')
    session.close("slow_consumer", discard=True)
    assert messages(session) == [
        {"type": "disconnect", "reason": "slow_consumer", "code": 4005, "reconnect": True}
    ]


def test_nothing_is_queued_after_close() -> None:
    session = subscribed(ws_session())
    session.begin_subscribe("other")
    session.close("server_shutdown")
    session.deliver(event(1))
    session.push_control('{"type":"pong"}')
    session.finish_subscribe("other", page(channel="other"))
    session.unsubscribe("news", request_id=1)
    assert summary(session) == [("disconnect", "server_shutdown")]


def test_on_ready_fires_when_the_outbox_stops_being_empty() -> None:
    calls: list[None] = []
    session = subscribed(ws_session(on_ready=lambda: calls.append(None)))
    calls.clear()
    session.deliver(event(1))
    session.deliver(event(2))
    assert len(calls) == 1
    session.take_frames()
    session.deliver(event(3))
    assert len(calls) == 2


def test_on_ready_fires_on_close() -> None:
    calls: list[None] = []
    session = ws_session(on_ready=lambda: calls.append(None))
    session.close("server_shutdown")
    assert calls == [None]


# --- subscriptions and live delivery -------------------------------------------------------


def test_fresh_subscription_is_not_recovered_and_gets_live_events() -> None:
    session = ws_session()
    session.begin_subscribe("news", request_id=4)
    session.finish_subscribe("news", page(top=7))
    assert messages(session) == [
        {"type": "subscribed", "channel": "news", "recovered": False, "position": "ep1-7", "id": 4}
    ]
    session.deliver(event(8))
    session.deliver(event(9))
    assert summary(session) == ids(8, 9)
    assert session.positions() == {"news": Position(EPOCH, 9)}


def test_events_of_other_channels_are_ignored() -> None:
    session = subscribed(ws_session())
    session.deliver(event(1, channel="elsewhere"))
    assert session.take_frames() == []


def test_redelivered_and_older_events_are_ignored() -> None:
    session = subscribed(ws_session(), at=5)
    for offset in (4, 5, 6, 6, 3, 7):
        session.deliver(event(offset))
    assert summary(session) == ids(6, 7)


def test_event_frame_is_the_shared_encoding() -> None:
    session = subscribed(ws_session())
    encoded = event(1)
    session.deliver(encoded)
    assert session.take_frames() == [encoded.ws_text]


def test_type_filter() -> None:
    session = subscribed(ws_session(), types=frozenset({"wanted"}))
    session.deliver(event(1, type_="wanted"))
    session.deliver(event(2, type_="other"))
    session.deliver(event(3, type_="wanted"))
    assert summary(session) == ids(1, 3)
    # Filtered events still move the position, so a resume does not replay them.
    session.deliver(event(4, type_="other"))
    assert session.positions() == {"news": Position(EPOCH, 4)}


def test_type_filter_applies_to_history_too() -> None:
    session = ws_session()
    session.begin_subscribe("news", since=f"{EPOCH}-0", types=frozenset({"a"}))
    history = HistoryPage(
        [event(1, type_="a").event, event(2, type_="b").event, event(3, type_="a").event],
        True,
        Position(EPOCH, 3),
    )
    session.finish_subscribe("news", history)
    assert summary(session) == [("subscribed", "news", True), *ids(1, 3)]


def test_subscribing_again_replaces_the_filter() -> None:
    session = subscribed(ws_session(), types=frozenset({"a"}))
    subscribed(session, at=0, types=frozenset({"b"}))
    session.deliver(event(1, type_="a"))
    session.deliver(event(2, type_="b"))
    assert summary(session) == ids(2)


def test_unsubscribe() -> None:
    session = subscribed(ws_session())
    assert session.unsubscribe("news", request_id="u")
    assert messages(session) == [{"type": "unsubscribed", "channel": "news", "id": "u"}]
    session.deliver(event(1))
    assert session.take_frames() == []
    assert not session.unsubscribe("news")
    assert session.take_frames() == []


def test_finish_subscribe_for_an_unknown_or_settled_channel_is_ignored() -> None:
    session = subscribed(ws_session())
    session.finish_subscribe("news", page(1, 2))
    session.finish_subscribe("never", page(1, channel="never"))
    assert session.take_frames() == []


# --- the resume seam ------------------------------------------------------------------------


def test_resume_delivers_missed_events_then_live_ones() -> None:
    session = ws_session()
    session.begin_subscribe("news", since=f"{EPOCH}-2", request_id=1)
    session.finish_subscribe("news", page(3, 4, 5))
    session.deliver(event(6))
    assert summary(session) == [("subscribed", "news", True), *ids(3, 4, 5, 6)]


def test_events_published_during_recovery_are_not_lost_or_doubled() -> None:
    session = ws_session()
    session.begin_subscribe("news", since=f"{EPOCH}-2")
    # Live events arrive while the history is being read; 4 and 5 are also in the page.
    for offset in (4, 5, 6, 7):
        session.deliver(event(offset))
    assert session.take_frames() == []
    session.finish_subscribe("news", page(3, 4, 5))
    session.deliver(event(7))  # a broker redelivery
    session.deliver(event(8))
    assert summary(session) == [("subscribed", "news", True), *ids(3, 4, 5, 6, 7, 8)]


def test_events_published_after_the_history_was_read_are_kept() -> None:
    session = ws_session()
    session.begin_subscribe("news", since=f"{EPOCH}-0")
    session.deliver(event(3))
    session.deliver(event(4))
    session.finish_subscribe("news", page(1, 2))
    assert summary(session) == [("subscribed", "news", True), *ids(1, 2, 3, 4)]


def test_recovery_with_nothing_missed() -> None:
    session = ws_session()
    session.begin_subscribe("news", since=f"{EPOCH}-5")
    session.finish_subscribe("news", page(top=5))
    session.deliver(event(6))
    assert summary(session) == [("subscribed", "news", True), *ids(6)]


def test_incomplete_history_sends_reset_then_live_events() -> None:
    session = ws_session()
    session.begin_subscribe("news", since=f"{EPOCH}-1")
    session.deliver(event(9))
    session.deliver(event(10))
    # History starts at 5: events 2-4 are gone. The page's events are not delivered.
    session.finish_subscribe("news", page(5, 6, 7, 8, 9, top=9, complete=False))
    session.deliver(event(11))
    queued = messages(session)
    assert summarize(queued) == [
        ("subscribed", "news", False),
        ("reset", "news", "history_gap"),
        *ids(10, 11),
    ]
    assert queued[1] == {
        "type": "reset",
        "channel": "news",
        "reason": "history_gap",
        "position": "ep1-9",
    }


def test_unknown_since_gets_reset() -> None:
    session = ws_session()
    session.begin_subscribe("news", since="not-a-position!")
    session.finish_subscribe("news", page(1, 2, complete=False))
    assert summary(session) == [("subscribed", "news", False), ("reset", "news", "history_gap")]
    assert session.positions() == {"news": Position(EPOCH, 2)}


def test_epoch_change_in_live_events_sends_reset() -> None:
    session = subscribed(ws_session(), at=41)
    session.deliver(event(42))
    session.deliver(event(1, epoch="ep2"))
    session.deliver(event(2, epoch="ep2"))
    assert summary(session) == [
        *ids(42),
        ("reset", "news", "history_gap"),
        ("event", "news", "ep2-1"),
        ("event", "news", "ep2-2"),
    ]
    assert session.positions() == {"news": Position("ep2", 2)}


def test_recovery_buffer_overflow_with_disconnect_policy_closes() -> None:
    session = ws_session(max_frames=3)
    session.begin_subscribe("news", since=f"{EPOCH}-0")
    for offset in range(1, 5):
        session.deliver(event(offset))
    assert session.state is State.CLOSING
    assert summary(session) == [("disconnect", "slow_consumer")]


def test_recovery_buffer_overflow_with_drop_policy_resets() -> None:
    session = ws_session(max_frames=3, slow_consumer="drop")
    session.begin_subscribe("news", since=f"{EPOCH}-0")
    for offset in range(1, 6):
        session.deliver(event(offset))
    session.finish_subscribe("news", page(top=0))
    assert summary(session) == [("subscribed", "news", True), ("reset", "news", "dropped")]
    assert session.positions() == {"news": Position(EPOCH, 5)}
    session.deliver(event(5))
    session.deliver(event(6))
    assert summary(session) == ids(6)


# --- outbox bounds ---------------------------------------------------------------------------


def test_disconnect_policy_closes_a_slow_consumer() -> None:
    session = subscribed(ws_session(max_frames=3))
    for offset in range(1, 4):
        session.deliver(event(offset))
    assert session.state is State.OPEN
    session.deliver(event(4))
    assert session.state is State.CLOSING
    assert session.close_reason == "slow_consumer"
    assert messages(session) == [
        {"type": "disconnect", "reason": "slow_consumer", "code": 4005, "reconnect": True}
    ]


def test_disconnect_policy_counts_bytes_too() -> None:
    size = len(event(1).ws_text)
    session = subscribed(ws_session(max_frames=100, max_bytes=2 * size + 1))
    session.deliver(event(1))
    session.deliver(event(2))
    assert session.state is State.OPEN
    session.deliver(event(3))
    assert summary(session) == [("disconnect", "slow_consumer")]


def test_a_consumer_that_keeps_up_is_never_closed() -> None:
    session = subscribed(ws_session(max_frames=2))
    for offset in range(1, 100):
        session.deliver(event(offset))
        assert summary(session) == ids(offset)
    assert session.state is State.OPEN


def test_slow_consumer_during_history_replay_leaves_only_the_disconnect() -> None:
    session = ws_session(max_frames=3)
    session.begin_subscribe("news", since=f"{EPOCH}-0")
    session.finish_subscribe("news", page(*range(1, 11)))
    assert summary(session) == [("disconnect", "slow_consumer")]


def test_drop_policy_drops_oldest_events_and_resets_first() -> None:
    session = subscribed(ws_session(max_frames=4, slow_consumer="drop"))
    for offset in range(1, 11):
        session.deliver(event(offset))
    assert session.state is State.OPEN
    got = summary(session)
    # One reset, first, then the newest events in order.
    assert got[0] == ("reset", "news", "dropped")
    assert all(entry[0] == "event" for entry in got[1:])
    delivered = [int(entry[2].split("-")[1]) for entry in got[1:]]
    assert delivered == list(range(11 - len(delivered), 11))
    assert 1 <= len(delivered) < 4
    assert session.dropped == 10 - len(delivered)


def test_drop_policy_keeps_the_outbox_bounded_for_a_stuck_client() -> None:
    session = ws_session(max_frames=8, max_bytes=10_000, slow_consumer="drop")
    subscribed(session, "a")
    subscribed(session, "b")
    offsets = {"a": 0, "b": 0}  # offsets grow by one per channel, as a store assigns them
    for n in range(1, 2001):
        channel = "a" if n % 3 else "b"
        offsets[channel] += 1
        session.deliver(event(offsets[channel], channel=channel))
        assert len(session.outbox) <= 8 + 2  # the bound, plus one reset per channel
        assert session.outbox.nbytes <= 10_000 + 2 * 200
    got = summary(session)
    assert got.count(("reset", "a", "dropped")) == 1
    assert got.count(("reset", "b", "dropped")) == 1
    assert got[-1] == ("event", "a", f"ep1-{offsets['a']}")


def test_drop_policy_keeps_control_frames() -> None:
    session = subscribed(ws_session(max_frames=4, slow_consumer="drop"))
    session.push_control('{"type":"pong"}')
    for offset in range(1, 11):
        session.deliver(event(offset))
    got = summary(session)
    assert ("pong",) in got
    assert got.count(("reset", "news", "dropped")) == 1
    assert got[-1] == ("event", "news", "ep1-10")


def test_drop_policy_resets_each_channel_that_lost_events() -> None:
    session = ws_session(max_frames=4, slow_consumer="drop")
    subscribed(session, "a")
    subscribed(session, "b")
    for offset in range(1, 6):
        session.deliver(event(offset, channel="a"))
        session.deliver(event(offset, channel="b"))
    got = summary(session)
    resets = {entry[1] for entry in got if entry[0] == "reset"}
    assert resets == {"a", "b"}
    first_event = next(i for i, entry in enumerate(got) if entry[0] == "event")
    assert all(entry[0] == "reset" for entry in got[:first_event])


def test_control_frames_may_exceed_the_bound_a_little() -> None:
    session = subscribed(ws_session(max_frames=4))
    for _ in range(6):
        session.push_control('{"type":"pong"}')
    assert session.state is State.OPEN
    assert len(session.take_frames()) == 6


def test_control_frame_flood_closes_the_connection() -> None:
    session = subscribed(ws_session(max_frames=4))
    for _ in range(20):
        session.push_control('{"type":"pong"}')
    assert session.state is State.CLOSING
    assert summary(session) == [("disconnect", "slow_consumer")]


def test_control_frame_flood_is_bounded_in_bytes_too() -> None:
    session = subscribed(ws_session(max_frames=1000, max_bytes=1000))
    big = '{"type":"error","message":"' + "x" * 300 + '"}'
    for _ in range(10):
        session.push_control(big)
    assert summary(session) == [("disconnect", "slow_consumer")]


def test_drop_policy_also_bounds_control_frames() -> None:
    session = subscribed(ws_session(max_frames=4, slow_consumer="drop"))
    for _ in range(20):
        session.push_control('{"type":"pong"}')
    assert summary(session) == [("disconnect", "slow_consumer")]


# --- SSE: the cursor in id: -------------------------------------------------------------------


def sse_session(**options: Any) -> Session:
    session = Session(SSEWire(**options))
    session.open()
    return session


def sse_messages(session: Session) -> tuple[list[SSEMessage], SSEDecoder]:
    decoder = SSEDecoder()
    frames = session.take_frames()
    assert all(isinstance(frame, bytes) for frame in frames)
    return list(decoder.feed(b"".join(f for f in frames if isinstance(f, bytes)))), decoder


def test_sse_single_channel_id_is_the_event_id() -> None:
    session = subscribed(sse_session(), at=3)
    session.deliver(event(4))
    got, decoder = sse_messages(session)
    assert [(m.id, m.event) for m in got] == [("ep1-4", "story")]
    assert json.loads(got[0].data) == event(4).event.to_dict()
    assert decode_cursor(decoder.last_event_id, ["news"]) == {"news": "ep1-4"}


def test_sse_plain_leaves_out_the_event_line() -> None:
    session = subscribed(sse_session(plain=True))
    session.deliver(event(1))
    frames = session.take_frames()
    assert frames == [b"id: ep1-1\ndata: " + event(1).json + b"\n\n"]


def test_sse_multi_channel_id_holds_every_channel() -> None:
    session = sse_session()
    subscribed(session, "a", at=3)
    subscribed(session, "b", at=10)
    session.deliver(event(4, channel="a"))
    session.deliver(event(11, channel="b"))
    got, decoder = sse_messages(session)
    assert decode_cursor(got[0].id, ["a", "b"]) == {"a": "ep1-4", "b": "ep1-10"}
    assert decode_cursor(decoder.last_event_id, ["a", "b"]) == {"a": "ep1-4", "b": "ep1-11"}


def test_sse_cursor_moves_past_filtered_events() -> None:
    session = sse_session()
    subscribed(session, "a", types=frozenset({"wanted"}))
    subscribed(session, "b")
    session.deliver(event(1, channel="a", type_="other"))
    session.deliver(event(1, channel="b"))
    got, _ = sse_messages(session)
    assert decode_cursor(got[-1].id, ["a", "b"]) == {"a": "ep1-1", "b": "ep1-1"}


def test_sse_cursor_while_another_channel_is_still_recovering() -> None:
    # The stream has two channels; an event of the settled one arrives while the other's
    # history is read. Its cursor must still say which channel its position is for.
    session = sse_session()
    subscribed(session, "a", at=3)
    session.begin_subscribe("b", since=f"{EPOCH}-0")
    session.deliver(event(4, channel="a"))
    got, _ = sse_messages(session)
    assert decode_cursor(got[0].id, ["a", "b"])["a"] == "ep1-4"


def test_sse_mark_position_sets_the_cursor_with_a_position_frame() -> None:
    session = sse_session()
    subscribed(session, "a", at=3)
    subscribed(session, "b", at=7)
    session.mark_position()
    got, decoder = sse_messages(session)
    # A named event with data: clients that apply an id only with data (Node's
    # `eventsource`) resume from it too, and `onmessage` never sees it.
    (position,) = got
    assert position.event == "position"
    assert json.loads(position.data) == {"cursor": position.id}
    assert decode_cursor(decoder.last_event_id, ["a", "b"]) == {"a": "ep1-3", "b": "ep1-7"}


def test_sse_mark_position_without_subscriptions_sends_nothing() -> None:
    session = sse_session()
    session.mark_position()
    assert session.take_frames() == []


def test_sse_mark_position_after_close_sends_nothing() -> None:
    # The queued events were discarded: a cursor past them would skip them on resume.
    session = sse_session()
    subscribed(session, "a")
    session.deliver(event(1, channel="a"))
    session.close("slow_consumer", discard=True)
    session.mark_position()
    got, decoder = sse_messages(session)
    assert [m.event for m in got] == ["disconnect"]
    assert decoder.last_event_id == ""


def test_sse_reset_and_disconnect_frames() -> None:
    session = sse_session()
    session.begin_subscribe("news", since="gone-3")
    session.finish_subscribe("news", page(top=5, complete=False))
    session.close("slow_consumer", discard=True)
    got, _ = sse_messages(session)
    assert [(m.event, json.loads(m.data)) for m in got] == [
        ("disconnect", {"reason": "slow_consumer", "code": 4005, "reconnect": True})
    ]
    session = sse_session()
    session.begin_subscribe("news", since="gone-3")
    session.finish_subscribe("news", page(top=5, complete=False))
    got, _ = sse_messages(session)
    assert [(m.event, json.loads(m.data)) for m in got] == [
        ("reset", {"channel": "news", "reason": "history_gap", "position": "ep1-5"})
    ]


def test_websocket_wire_has_no_position_frame() -> None:
    session = subscribed(ws_session())
    session.mark_position()
    assert session.take_frames() == []


def test_a_gap_in_live_events_is_answered_with_reset() -> None:
    session = subscribed(ws_session())
    session.deliver(event(1))
    session.deliver(event(4))  # 2 and 3 never arrived and could not be filled
    got = summary(session)
    assert got[-2:] == [("reset", "news", "history_gap"), ("event", "news", "ep1-4")]
