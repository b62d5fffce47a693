"""Scheduled events: one event to publish later, under a key that can replace or cancel it.

Sans-I/O: the record, when it is due (from ``at`` or ``delay_s``), key rules, and its
JSON form in stores. Storing them is the backends' (``Schedules``); firing them, the
node's (:mod:`tidings.scheduling`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tidings.core.events import format_timestamp
from tidings.errors import BadRequest

__all__ = [
    "MAX_DELAY",
    "Scheduled",
    "due_time",
    "format_time",
    "new_key",
    "new_version",
    "validate_key",
]

#: The furthest ahead an event may be scheduled, seconds (about ten years).
MAX_DELAY = 10 * 365 * 24 * 3600.0

_KEY = re.compile(r"[A-Za-z0-9_\-.:@=/]{1,200}")


@dataclass(frozen=True, slots=True)
class Scheduled:
    """An event waiting for its time.

    ``version`` is new each time a key is (re)scheduled: the event it fires carries it as
    its idempotency key, so a schedule fired twice (two nodes, a lease that ran out) is
    stored once, and a replaced schedule is never confused with its successor.
    """

    key: str
    channel: str
    type: str
    data: Any
    #: Unix time the event is due.
    at: float
    version: str

    def to_dict(self) -> dict[str, Any]:
        """What the API shows of a pending schedule (its data too)."""
        return {
            "key": self.key,
            "channel": self.channel,
            "type": self.type,
            "at": format_time(self.at),
            "data": self.data,
        }

    def summary(self) -> dict[str, Any]:
        """The answer to scheduling it: ``{"key", "channel", "type", "at"}``."""
        return {
            "key": self.key,
            "channel": self.channel,
            "type": self.type,
            "at": format_time(self.at),
        }

    @property
    def idempotency_key(self) -> str:
        return "schedule:" + self.version

    def dumps(self) -> bytes:
        """The record as stores keep it."""
        return orjson.dumps(
            {
                "key": self.key,
                "channel": self.channel,
                "type": self.type,
                "data": self.data,
                "at": self.at,
                "version": self.version,
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> Scheduled:
        value = orjson.loads(raw)
        return cls(
            key=value["key"],
            channel=value["channel"],
            type=value["type"],
            data=value.get("data"),
            at=float(value["at"]),
            version=value["version"],
        )


def due_time(*, at: str | datetime | None, delay: float | None, now: float) -> float:
    """The Unix time an event is due: ``at`` (RFC 3339 with an offset, or an aware
    datetime) or ``delay`` seconds from ``now``; exactly one of them."""
    if (at is None) == (delay is None):
        raise BadRequest("give either at or delay_s, not both", code="invalid_schedule")
    if delay is not None:
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not delay >= 0:
            raise BadRequest("delay_s must be a number of seconds >= 0", code="invalid_schedule")
        when = now + float(delay)
    else:
        when = _parse_time(at)
    if when - now > MAX_DELAY:
        raise BadRequest(
            "an event may be scheduled at most ten years ahead", code="invalid_schedule"
        )
    return when


def _parse_time(at: object) -> float:
    if isinstance(at, datetime):
        moment = at
    elif isinstance(at, str):
        try:
            moment = datetime.fromisoformat(at.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadRequest(
                f"at must be an RFC 3339 time such as 2026-12-04T10:00:00Z (got {at[:40]!r})",
                code="invalid_schedule",
            ) from None
    else:
        raise BadRequest("at must be an RFC 3339 time string", code="invalid_schedule")
    if moment.tzinfo is None:
        raise BadRequest(
            "at needs a UTC offset (Z or +01:00): a time without one is ambiguous",
            code="invalid_schedule",
        )
    return moment.timestamp()


def format_time(when: float) -> str:
    """RFC 3339 UTC with milliseconds, as event timestamps are written."""
    return format_timestamp(datetime.fromtimestamp(when, UTC))


def validate_key(key: object) -> str:
    """``key`` if it may name a schedule: 1-200 letters, digits and ``_ - . : @ = /``."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise BadRequest(
            "a schedule key is 1-200 letters, digits and _ - . : @ = /", code="invalid_schedule"
        )
    return key


def new_key() -> str:
    """A key for a schedule given none."""
    return secrets.token_urlsafe(12)


def new_version() -> str:
    return secrets.token_hex(8)
