"""Which browser origins may open streams (SPEC §6)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["origin_allowed"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """True when a request with ``Origin: origin`` to ``Host: host`` may proceed.

    Requests without an ``Origin`` (non-browser clients) are allowed; so is the same
    origin, and every origin in ``allowed`` (``*`` allows all). With no list configured,
    localhost origins are allowed too (development servers on another port).
    """
    if origin is None:
        return True
    allowed = tuple(allowed)
    if "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if not allowed and parts.hostname in _LOCAL_HOSTS:
        # The default list: same origin and localhost. A configured list replaces it.
        return True
    return host is not None and parts.netloc.lower() == host.lower()
