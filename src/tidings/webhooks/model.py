"""Webhook endpoints and deliveries as plain values, and the rules that move them.

Sans-I/O: which endpoint wants which event, what a delivery's id and body are, what an
answer means (delivered, retry when, give up, disable the endpoint), and the JSON form
records are kept in. :mod:`tidings.webhooks.service` does the I/O.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import orjson

from tidings.core.channels import channel_matches
from tidings.core.events import Event

__all__ = [
    "Delivery",
    "Endpoint",
    "Outcome",
    "body_of",
    "delivery_key",
    "judge",
    "new_endpoint_id",
    "retry_after",
]

Status = Literal["pending", "delivered", "failed"]
#: How much of a receiver's answer a delivery keeps, characters.
EXCERPT = 500
#: The longest ``Retry-After`` honoured, seconds.
MAX_RETRY_AFTER = 24 * 3600.0


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where events go: a URL, the channels and types it wants, and how they are signed.

    ``secrets`` holds the current secret first, then earlier ones with the time until
    which they still sign (rotation: receivers may check either during the overlap).
    """

    id: str
    url: str
    channels: tuple[str, ...] = ("*",)
    types: tuple[str, ...] = ()
    secrets: tuple[tuple[str, float | None], ...] = ()
    enabled: bool = True
    description: str = ""
    tenant: str | None = None
    created_at: float = 0.0
    disabled_reason: str | None = None
    #: Since when every attempt has failed (``None``: the last one succeeded).
    failing_since: float | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None

    def wants(self, event: Event) -> bool:
        """Whether ``event`` goes to this endpoint (tenant, channel patterns, types)."""
        if not self.enabled:
            return False
        if self.tenant is not None and not event.channel.startswith(f"tenant:{self.tenant}/"):
            return False
        if self.types and event.type not in self.types:
            return False
        return any(channel_matches(event.channel, pattern) for pattern in self.channels)

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets that sign a request sent at ``now``: the current one, and earlier
        ones still inside their overlap."""
        return [secret for secret, until in self.secrets if until is None or until > now]

    def rotated(self, secret: str, now: float, overlap: float) -> Endpoint:
        """This endpoint signing with ``secret`` from now on; the old secret keeps signing
        for ``overlap`` seconds."""
        kept = [(old, now + overlap if until is None else until) for old, until in self.secrets]
        kept = [(old, until) for old, until in kept if until > now]
        return replace(self, secrets=((secret, None), *kept))

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the secrets."""
        shown = asdict(self)
        del shown["secrets"]
        shown["channels"] = list(self.channels)
        shown["types"] = list(self.types)
        return shown

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes) -> Endpoint:
        value = orjson.loads(raw)
        value["channels"] = tuple(value["channels"])
        value["types"] = tuple(value["types"])
        value["secrets"] = tuple((s, until) for s, until in value["secrets"])
        return cls(**value)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one endpoint, from enqueued to delivered or given up on.

    ``key`` is where it is kept and what the API calls it; ``message_id`` is the
    ``webhook-id`` header, the same on every attempt so receivers can de-duplicate.
    """

    key: str
    endpoint_id: str
    event: dict[str, Any]
    created_at: float
    status: Status = "pending"
    attempts: int = 0
    next_at: float | None = None
    last_attempt_at: float | None = None
    last_status: int | None = None
    last_body: str = ""
    last_error: str | None = None
    history: tuple[dict[str, Any], ...] = field(default=())

    @property
    def message_id(self) -> str:
        return "msg_" + self.key

    def public(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["id"] = shown.pop("key")
        shown["message_id"] = self.message_id
        shown["history"] = list(self.history)
        return shown

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes) -> Delivery:
        value = orjson.loads(raw)
        value["history"] = tuple(value.get("history", ()))
        return cls(**value)


def delivery_key(endpoint_id: str, event: dict[str, Any]) -> str:
    """The same key for the same event and endpoint, however often it is enqueued (a
    replayed publish, a scheduled event fired twice), ordered by the event's time."""
    digest = hashlib.sha256(f"{endpoint_id}\n{event['channel']}\n{event['id']}".encode()).digest()
    stamp = "".join(c for c in str(event.get("timestamp", "")) if c.isdigit())
    return stamp + "_" + base64.b32encode(digest[:10]).decode().lower()


def body_of(delivery: Delivery) -> bytes:
    """The request body: Standard Webhooks' ``{"type", "timestamp", "data"}``, whose
    ``data`` is the event object of SPEC §1."""
    event = delivery.event
    return orjson.dumps({"type": event["type"], "timestamp": event["timestamp"], "data": event})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt's answer means for the delivery and its endpoint."""

    delivery: Delivery
    #: The endpoint must be disabled, and why (``gone``: the receiver said 410).
    disable: str | None = None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), capped
    at a day; ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - now), MAX_RETRY_AFTER)


def judge(
    delivery: Delivery,
    *,
    now: float,
    status: int | None,
    body: str = "",
    error: str | None = None,
    retry_after_s: float | None = None,
    schedule: Sequence[float],
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> Outcome:
    """The delivery after an attempt answered ``status`` (or failed with ``error``).

    2xx: delivered. 410: failed, and the endpoint is disabled. Anything else is retried
    after ``schedule[attempts - 1]`` seconds (± ``jitter``), or after ``Retry-After`` on
    429 and 503; once the schedule is used up the delivery has failed.
    """
    attempts = delivery.attempts + 1
    record = {"at": now, "status": status, "error": error}
    history = (*delivery.history, record)[-10:]
    base = replace(
        delivery,
        attempts=attempts,
        last_attempt_at=now,
        last_status=status,
        last_body=body[:EXCERPT],
        last_error=error,
        history=history,
    )
    if status is not None and 200 <= status < 300:
        return Outcome(replace(base, status="delivered", next_at=None))
    if status == 410:
        return Outcome(replace(base, status="failed", next_at=None), disable="gone")
    if attempts > len(schedule):
        return Outcome(replace(base, status="failed", next_at=None))
    delay = schedule[attempts - 1]
    delay *= 1 + (rng or random).uniform(-jitter, jitter)
    if status in (429, 503) and retry_after_s is not None:
        delay = retry_after_s
    return Outcome(replace(base, status="pending", next_at=now + delay))
