"""Channel and event-type names: what is allowed, and glob patterns over channels.

This module must stay pure: it validates strings and nothing else.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from tidings.errors import InvalidChannel, InvalidEvent

__all__ = [
    "CHANNEL_MAX",
    "TYPE_MAX",
    "channel_matches",
    "personal_channel",
    "validate_channel",
    "validate_type",
]

CHANNEL_MAX = 200
TYPE_MAX = 100

_CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-.:/@=]{1,200}")
_TYPE_RE = re.compile(r"[A-Za-z0-9_\-.:/]{1,100}")


def validate_channel(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise :class:`InvalidChannel`.

    Names are 1-200 characters of ASCII letters, digits and ``_ - . : / @ =``.
    """
    if not isinstance(name, str):
        raise InvalidChannel("channel must be a string")
    if not name:
        raise InvalidChannel("channel must not be empty")
    if len(name) > CHANNEL_MAX:
        raise InvalidChannel(f"channel is longer than {CHANNEL_MAX} characters")
    if _CHANNEL_RE.fullmatch(name) is None:
        raise InvalidChannel(
            f"channel {name[:60]!r} has characters outside letters, digits and _ - . : / @ ="
        )
    return name


def validate_type(name: object) -> str:
    """Return ``name`` if it is a valid event type, else raise :class:`InvalidEvent`.

    Types are 1-100 characters of ASCII letters, digits and ``_ - . : /``; they end up
    on an SSE ``event:`` line, so nothing that could break a frame is allowed.
    """
    if not isinstance(name, str):
        raise InvalidEvent("type must be a string", code="invalid_type")
    if _TYPE_RE.fullmatch(name) is None:
        raise InvalidEvent(
            f"type must be 1-{TYPE_MAX} characters of letters, digits and _ - . : /",
            code="invalid_type",
        )
    return name


def channel_matches(channel: str, pattern: str) -> bool:
    """True when ``channel`` matches the glob ``pattern`` (``*``, ``?``, ``[...]``)."""
    return fnmatchcase(channel, pattern)


def personal_channel(client_id: str, tenant: str | None = None) -> str:
    """The personal channel every authenticated connection of ``client_id`` joins: in a
    tenant, ``tenant:<t>/client:<id>`` (two tenants' "alice" are two clients)."""
    if tenant is not None:
        return f"tenant:{tenant}/client:{client_id}"
    return f"client:{client_id}"
