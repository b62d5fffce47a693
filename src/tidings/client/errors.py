"""The client's exceptions, a branch of the one tree of :mod:`tidings.errors`::

TidingsError
└── ClientError
    ├── Reset              history no longer reaches back: refetch the channel's state
    ├── ConnectionFailed   the client gave up (do-not-reconnect close, or out of attempts)
    ├── RequestError       the hub answered a request (publish, ping, …) with an error
    └── ClientClosed       the client was closed while the call was waiting
"""

from __future__ import annotations

from tidings.errors import TidingsError

__all__ = ["ClientClosed", "ClientError", "ConnectionFailed", "RequestError", "Reset"]


class ClientError(TidingsError):
    """Root of every exception :mod:`tidings.client` raises (``except TidingsError``
    catches them too). Its ``status`` and ``code`` describe the client's side: a
    :class:`RequestError` carries the hub's code."""

    code = "client_error"


class Reset(ClientError):
    """The hub could not resume ``channel``: events were lost (``reason`` ``history_gap``
    or ``dropped``). Live events continue after ``position``; keep iterating after
    refetching the channel's state."""

    def __init__(self, channel: str, reason: str, position: str) -> None:
        super().__init__(f"{channel}: {reason} (now at {position})")
        self.channel = channel
        self.reason = reason
        self.position = position


class ConnectionFailed(ClientError):
    """The client stopped reconnecting; ``reason`` says why (a close reason such as
    ``token_revoked``, an HTTP error code, or ``attempts_exhausted``)."""

    def __init__(self, reason: str, last_error: str | None = None) -> None:
        super().__init__(f"{reason} ({last_error})" if last_error else reason)
        self.reason = reason
        #: With ``attempts_exhausted``: why the last attempt failed.
        self.last_error = last_error


class RequestError(ClientError):
    """A request was refused; ``code`` is the hub's error code (``forbidden``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ClientClosed(ClientError):
    """The client was closed."""
