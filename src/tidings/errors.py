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
    │   ├── InvalidJSON               400 invalid_json
    │   ├── ProtocolError             400 bad_message (WebSocket messages)
    │   └── UnsupportedMediaType      415 unsupported_media_type
    ├── TooLarge                      413 too_large (event_too_large, body_too_large, …)
    ├── Unauthorized                  401 unauthorized
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not_found
    ├── LimitExceeded                 429 limit_exceeded (rate_limited, too_many_…)
    ├── Unavailable                   503 unavailable (broker or store down)
    └── IllegalTransition             500 — a bug: a session asked for a move its state forbids
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Forbidden",
    "IllegalTransition",
    "InvalidChannel",
    "InvalidEvent",
    "InvalidJSON",
    "LimitExceeded",
    "NotFound",
    "ProtocolError",
    "TidingsError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
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

    def to_dict(self) -> dict[str, object]:
        """The JSON error body of SPEC §3."""
        return {"error": {"code": self.code, "message": self.message}}


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


class UnsupportedMediaType(BadRequest):
    """A request body is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class TooLarge(TidingsError):
    """A body, event or batch is over its configured limit."""

    status = 413
    code = "too_large"


class Unauthorized(TidingsError):
    """No credential, or one that is not valid."""

    status = 401
    code = "unauthorized"


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


class IllegalTransition(TidingsError):
    """A state machine was asked for a transition its table forbids (a bug)."""
