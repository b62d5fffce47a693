"""Which browser origins may open streams (SPEC §6)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["cross_origin_allowed", "origin_allowed"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def cross_origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """True when a page of ``origin`` (another origin than the hub's) may use the hub.

    The one rule for stream admission and for CORS: an explicit list is exact (``*``
    allows all); with no list (development), pages on localhost, any port, are allowed.
    """
    allowed = tuple(allowed)
    if "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    if allowed:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.hostname in _LOCAL_HOSTS


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """True when a request with ``Origin: origin`` to ``Host: host`` may proceed.

    Requests without an ``Origin`` (non-browser clients) are allowed; so is the same
    origin, and what :func:`cross_origin_allowed` allows.
    """
    if origin is None or cross_origin_allowed(origin, allowed):
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return host is not None and parts.netloc.lower() == host.lower()
