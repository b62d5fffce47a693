"""The one exception tree of tidings, with the wire codes each error carries.

Every error a client can cause maps to a stable ``code`` (sent as
``{"error": {"code", "message"}}`` over HTTP and as ``{"type": "error", "code"}`` over
WebSocket) and an HTTP ``status``. Messages are written for the client: they never
contain secrets, tokens or stack traces.

::

    TidingsError                      500 internal_error
    ├── BadRequest                    400 bad_request
    │   ├── InvalidChannel            400 invalid_channel
    │   ├── InvalidEvent              400 invalid_event
    │   │   ├── InvalidEventData      400 invalid_event, with ``errors`` (typed.py)
    │   │   └── UnknownEventType      400 unknown_event_type (strict types; typed.py)
    │   ├── InvalidJSON               400 invalid_json
    │   ├── ProtocolError             400 bad_message (WebSocket messages)
    │   │   └── WebSocketError        400 bad_frame (RFC 6455 broken; carries a close code)
    │   ├── HandshakeError            400 bad_request (not a WebSocket opening handshake)
    │   └── UnsupportedMediaType      415 unsupported_media_type
    ├── TooLarge                      413 too_large (event_too_large, body_too_large, …)
    │   └── HeadersTooLarge           431 headers_too_large (the request's header block)
    ├── Unauthorized                  401 unauthorized
    │   └── InvalidSignature          401 invalid_signature (a Standard Webhooks signature)
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not_found (unknown_command, …)
    ├── LimitExceeded                 429 limit_exceeded (rate_limited, too_many_…)
    ├── Unavailable                   503 unavailable (broker or store down)
    │   ├── BackendError              503 unavailable; its message is for logs, not clients
    │   └── CommandUnavailable        503 command_unavailable (the command URL unreachable)
    ├── CommandFailed                 502 command_failed (a handler or the application failed)
    ├── CommandTimeout                504 command_timeout (the application did not answer)
    └── IllegalTransition             500 — a bug: a session asked for a move its state forbids
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "BadRequest",
    "CommandFailed",
    "CommandTimeout",
    "CommandUnavailable",
    "Forbidden",
    "HandshakeError",
    "HeadersTooLarge",
    "IllegalTransition",
    "InvalidChannel",
    "InvalidEvent",
    "InvalidJSON",
    "InvalidSignature",
    "LimitExceeded",
    "NotFound",
    "ProtocolError",
    "TidingsError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WebSocketError",
]


class TidingsError(Exception):
    """Root of every error tidings raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        #: The WebSocket request ``id`` this error answers, if any.
        self.request_id = request_id
        #: Seconds a client should wait before trying again (429, 503).
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        """Fields the error adds to its body beside ``code`` and ``message`` (over HTTP
        in ``{"error": {...}}``, over WebSocket in the ``error`` message); none by default."""
        return {}


class BadRequest(TidingsError):
    """The request or message is malformed."""

    status = 400
    code = "bad_request"


class InvalidChannel(BadRequest):
    """A channel name breaks the naming rules."""

    code = "invalid_channel"


class InvalidEvent(BadRequest):
    """An event's type or data is not acceptable."""

    code = "invalid_event"


class InvalidJSON(BadRequest):
    """A body or message is not valid JSON."""

    code = "invalid_json"


class ProtocolError(BadRequest):
    """A WebSocket client message breaks the message protocol."""

    code = "bad_message"


class WebSocketError(ProtocolError):
    """A violation of RFC 6455 by the peer: the connection must be failed.

    ``close_code`` and ``reason`` are what to put in the close frame sent before closing
    (1002 protocol error, 1007 invalid UTF-8, 1009 message too big). ``events`` holds
    the messages the reader had completed, in the same call, before the bytes that broke
    the rules; deliver them before failing, so that where the stream happened to be
    split never changes what the application sees.
    """

    code = "bad_frame"

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"{reason} ({close_code})")
        self.close_code = close_code
        self.reason = reason
        self.events: list[Any] = []


class HandshakeError(BadRequest):
    """An upgrade request that is not a valid WebSocket opening handshake; the message
    says what is wrong, fit to send back in a 400 response (code ``bad_request``)."""


class UnsupportedMediaType(BadRequest):
    """A request body is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class TooLarge(TidingsError):
    """A body, event or batch is over its configured limit."""

    status = 413
    code = "too_large"


class HeadersTooLarge(TooLarge):
    """A request's header block passed ``max_header_size`` (raised while it is parsed)."""

    status = 431
    code = "headers_too_large"

    def __init__(self, message: str = "the request's header block is too large") -> None:
        super().__init__(message)


class Unauthorized(TidingsError):
    """No credential, or one that is not valid."""

    status = 401
    code = "unauthorized"


class InvalidSignature(Unauthorized):
    """A signed request (Standard Webhooks) whose signature or timestamp does not hold."""

    code = "invalid_signature"


class Forbidden(TidingsError):
    """A valid credential that does not allow this."""

    status = 403
    code = "forbidden"


class NotFound(TidingsError):
    """The addressed thing does not exist."""

    status = 404
    code = "not_found"


class LimitExceeded(TidingsError):
    """A rate or count limit was hit."""

    status = 429
    code = "limit_exceeded"


class Unavailable(TidingsError):
    """A backend the hub needs (broker, store) cannot be reached."""

    status = 503
    code = "unavailable"


class BackendError(Unavailable):
    """A backend cannot be used (a SQLite file deleted under the hub, not a tidings
    database, …). Clients get a plain 503 ``unavailable``: the message names files and
    servers, so it is written to the logs only (see
    :func:`tidings.backends.base.backend_failure`)."""


class CommandUnavailable(Unavailable):
    """The application's command URL cannot be reached (refused, DNS, reset)."""

    code = "command_unavailable"


class CommandFailed(TidingsError):
    """A command handler raised, or the application answered with an error."""

    status = 502
    code = "command_failed"


class CommandTimeout(TidingsError):
    """The application did not answer a command within ``command_timeout``."""

    status = 504
    code = "command_timeout"


class IllegalTransition(TidingsError):
    """A state machine was asked for a transition its table forbids (a bug)."""
