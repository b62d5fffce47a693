"""Reconnection delays: exponential, capped, jittered. Pure arithmetic, no clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before reconnection attempt ``n`` (0-based), and how many to make.

    The delay is ``min(max, initial * factor**n)`` multiplied by a random factor in
    ``[1 - jitter, 1]``, so clients dropped together do not return together. After
    ``attempts`` failed reconnection attempts in a row the client gives up (status
    ``failed``); ``attempts=None`` retries forever. A connection that worked for at least
    ``stable_after`` seconds resets ``n``; one closed sooner (an expired token, a full
    hub) counts as a failed attempt, so the client backs off instead of looping.
    """

    initial: float = 1.0
    factor: float = 2.0
    max: float = 30.0
    jitter: float = 0.5
    attempts: int | None = 10
    stable_after: float = 5.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max < 0 or self.factor < 1:
            raise ValueError("backoff needs initial >= 0, max >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")
        if self.stable_after < 0:
            raise ValueError("backoff stable_after must be >= 0")
        if self.attempts is not None and self.attempts < 0:
            raise ValueError("backoff attempts must be >= 0 (or None for no limit)")

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """The delay before reconnection attempt ``attempt``; ``random()`` is in [0, 1)."""
        base = min(self.max, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * random())

    def exhausted(self, attempt: int) -> bool:
        """Whether reconnection attempt ``attempt`` (0-based) is one too many."""
        return self.attempts is not None and attempt >= self.attempts
