"""The life and closing handshake of a server-side WebSocket, as a transition table.

RFC 6455 §7 in one table, Sans-I/O: :class:`Lifecycle` takes what happened (we close, the
peer's close frame arrives, the peer broke the protocol, the close deadline passed, the
transport was lost) and answers the new :class:`State` and what the I/O layer must do
(:class:`Do`), in the order the flags are listed. Nothing else may move the state.

What must never happen: two close frames sent by us; anything sent after our close frame
or after the peer's; a connection that outlives its close deadline; the handler told
twice that the connection is gone. Events the table does not list are bugs, and raise
:class:`~tidings.errors.IllegalTransition`.

::

    CONNECTING --opened--> OPEN --close--> CLOSING --peer_close--> CLOSED
                            |  \\--fail---> CLOSING --no_eof------> CLOSED
                            +----peer_close (echoed)------------> CLOSED
    CLOSING / CLOSED --deadline--> CLOSED (aborted);   any --lost--> CLOSED
"""

from __future__ import annotations

import enum

from tidings.errors import IllegalTransition

__all__ = ["TRANSITIONS", "Do", "Happened", "Lifecycle", "State"]


class State(enum.Enum):
    """Where a connection is in its life (RFC 6455 §4, §7)."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Happened(enum.Enum):
    """What the I/O layer reports."""

    OPENED = "opened"  # the transport is ours
    CLOSE = "close"  # we close, with a code and reason
    PEER_CLOSE = "peer_close"  # the peer's close frame arrived
    FAIL = "fail"  # the peer broke RFC 6455 (we close with the code it calls for)
    NO_EOF = "no_eof"  # the transport cannot half-close
    DEADLINE = "deadline"  # the close timeout passed
    LOST = "lost"  # the transport is gone


class Do(enum.Flag):
    """What the I/O layer must do, in this order."""

    NOTHING = 0
    SEND_CLOSE = enum.auto()  # write our close frame (code, reason)
    ECHO_CLOSE = enum.auto()  # write a close frame with the peer's code
    HALF_CLOSE = enum.auto()  # write EOF; report NO_EOF if the transport cannot
    CLOSE_TRANSPORT = enum.auto()  # close the transport (it flushes what is written)
    START_TIMER = enum.auto()  # arm the close deadline (once)
    ABORT_TRANSPORT = enum.auto()  # drop the transport now
    STOP_TIMER = enum.auto()  # disarm the close deadline
    REPORT_CLOSED = enum.auto()  # tell the handler the connection is gone


S, H = State, Happened

#: Every legal move: (state, what happened) -> (new state, what to do).
TRANSITIONS: dict[tuple[State, Happened], tuple[State, Do]] = {
    (S.CONNECTING, H.OPENED): (S.OPEN, Do.NOTHING),
    # Our close frame goes out once; closing again is a no-op.
    (S.OPEN, H.CLOSE): (S.CLOSING, Do.SEND_CLOSE | Do.START_TIMER),
    (S.CLOSING, H.CLOSE): (S.CLOSING, Do.NOTHING),
    (S.CLOSED, H.CLOSE): (S.CLOSED, Do.NOTHING),
    # The peer closes first: echo its code, and the server drops TCP first (§7.1.1).
    (S.OPEN, H.PEER_CLOSE): (S.CLOSED, Do.ECHO_CLOSE | Do.CLOSE_TRANSPORT | Do.START_TIMER),
    # The answer to ours: done.
    (S.CLOSING, H.PEER_CLOSE): (S.CLOSED, Do.CLOSE_TRANSPORT | Do.START_TIMER),
    (S.CLOSED, H.PEER_CLOSE): (S.CLOSED, Do.NOTHING),
    # A protocol violation (§7.1.7): close with its code, stop reading, and half-close so
    # the peer sees we are done while the server still drops TCP first.
    (S.OPEN, H.FAIL): (S.CLOSING, Do.SEND_CLOSE | Do.HALF_CLOSE | Do.START_TIMER),
    (S.CLOSING, H.FAIL): (S.CLOSING, Do.HALF_CLOSE),
    (S.CLOSED, H.FAIL): (S.CLOSED, Do.NOTHING),
    (S.CLOSING, H.NO_EOF): (S.CLOSED, Do.CLOSE_TRANSPORT),
    # A peer that does not finish the handshake in time is cut off.
    (S.CLOSING, H.DEADLINE): (S.CLOSED, Do.ABORT_TRANSPORT),
    (S.CLOSED, H.DEADLINE): (S.CLOSED, Do.ABORT_TRANSPORT),
    **{
        (state, H.LOST): (S.CLOSED, Do.STOP_TIMER | Do.REPORT_CLOSED)
        for state in (S.CONNECTING, S.OPEN, S.CLOSING, S.CLOSED)
    },
}


class Lifecycle:
    """The state of one connection, moved only by :data:`TRANSITIONS`."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.CONNECTING

    def handle(self, happened: Happened) -> Do:
        """Move on ``happened``; answer what to do. Raises on a move the table lacks."""
        try:
            self.state, do = TRANSITIONS[self.state, happened]
        except KeyError:
            raise IllegalTransition(
                f"a WebSocket {self.state.value} cannot handle {happened.value}"
            ) from None
        return do
