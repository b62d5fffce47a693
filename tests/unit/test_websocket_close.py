"""The WebSocket lifecycle table on its own: every move, and the moves it refuses."""

from __future__ import annotations

import pytest

from tidings.core.websocket_close import TRANSITIONS, Do, Happened, Lifecycle, State
from tidings.errors import IllegalTransition


def at(state: State) -> Lifecycle:
    life = Lifecycle()
    life.state = state
    return life


def test_a_server_close_sends_one_close_frame_then_waits_for_the_answer() -> None:
    life = Lifecycle()
    assert life.handle(Happened.OPENED) is Do.NOTHING and life.state is State.OPEN
    assert life.handle(Happened.CLOSE) == Do.SEND_CLOSE | Do.START_TIMER
    assert life.state is State.CLOSING
    assert life.handle(Happened.CLOSE) is Do.NOTHING  # never a second close frame
    assert life.handle(Happened.PEER_CLOSE) == Do.CLOSE_TRANSPORT | Do.START_TIMER
    assert life.state is State.CLOSED
    assert life.handle(Happened.LOST) == Do.STOP_TIMER | Do.REPORT_CLOSED


def test_a_peer_close_is_echoed_and_the_server_drops_tcp_first() -> None:
    life = at(State.OPEN)
    assert life.handle(Happened.PEER_CLOSE) == (Do.ECHO_CLOSE | Do.CLOSE_TRANSPORT | Do.START_TIMER)
    assert life.state is State.CLOSED
    assert life.handle(Happened.CLOSE) is Do.NOTHING  # nothing after the peer's close
    assert life.handle(Happened.PEER_CLOSE) is Do.NOTHING


def test_a_protocol_violation_closes_and_half_closes() -> None:
    life = at(State.OPEN)
    assert life.handle(Happened.FAIL) == Do.SEND_CLOSE | Do.HALF_CLOSE | Do.START_TIMER
    assert life.state is State.CLOSING
    # A transport that cannot half-close is closed instead.
    assert life.handle(Happened.NO_EOF) is Do.CLOSE_TRANSPORT
    assert life.state is State.CLOSED


def test_a_violation_while_closing_only_half_closes() -> None:
    life = at(State.CLOSING)
    assert life.handle(Happened.FAIL) is Do.HALF_CLOSE
    assert life.state is State.CLOSING


@pytest.mark.parametrize("state", [State.CLOSING, State.CLOSED])
def test_a_missed_deadline_aborts(state: State) -> None:
    life = at(state)
    assert life.handle(Happened.DEADLINE) is Do.ABORT_TRANSPORT
    assert life.state is State.CLOSED


@pytest.mark.parametrize("state", list(State))
def test_a_lost_transport_is_reported_from_any_state(state: State) -> None:
    life = at(state)
    assert life.handle(Happened.LOST) == Do.STOP_TIMER | Do.REPORT_CLOSED
    assert life.state is State.CLOSED


ILLEGAL = [
    (state, happened)
    for state in State
    for happened in Happened
    if (state, happened) not in TRANSITIONS
]


def test_the_illegal_moves_are_the_ones_that_cannot_happen() -> None:
    assert set(ILLEGAL) == {
        (State.CONNECTING, Happened.CLOSE),
        (State.CONNECTING, Happened.PEER_CLOSE),
        (State.CONNECTING, Happened.FAIL),
        (State.CONNECTING, Happened.NO_EOF),
        (State.CONNECTING, Happened.DEADLINE),
        (State.OPEN, Happened.OPENED),
        (State.OPEN, Happened.NO_EOF),
        (State.OPEN, Happened.DEADLINE),
        (State.CLOSING, Happened.OPENED),
        (State.CLOSED, Happened.OPENED),
        (State.CLOSED, Happened.NO_EOF),
    }


@pytest.mark.parametrize(("state", "happened"), ILLEGAL)
def test_an_illegal_move_raises_and_keeps_the_state(state: State, happened: Happened) -> None:
    life = at(state)
    with pytest.raises(IllegalTransition):
        life.handle(happened)
    assert life.state is state
