"""Cross-origin rules (CORS), written once for streams and the HTTP API.

The origins are those of :func:`~tidings.auth.origins.cross_origin_allowed`, the rule
stream admission uses too. With no ``allowed_origins`` (development), pages on localhost
(any port) get the headers that let a browser read a response, without credentials
(tokens go in a header or ``?token=``). With a list, exactly the listed origins get
them, with credentials (for cookie tokens); ``"*"`` allows every origin without
credentials. A preflight from an allowed origin is answered here, not by the endpoint.
What must never happen: credentials allowed for an origin not listed.
"""

from __future__ import annotations

from collections.abc import Iterable

from tidings.auth.origins import cross_origin_allowed

__all__ = ["ALLOW_HEADERS", "ALLOW_METHODS", "Cors"]

ALLOW_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
ALLOW_HEADERS = ("authorization", "content-type", "last-event-id", "x-request-id")
EXPOSE_HEADERS = b"X-Request-ID, Retry-After"
MAX_AGE = b"600"

Header = tuple[bytes, bytes]


class Cors:
    """The CORS policy of one hub."""

    def __init__(self, allowed_origins: Iterable[str]) -> None:
        self.allowed = tuple(allowed_origins)
        self.allow_all = "*" in self.allowed
        # Cookies cross origin only for origins listed by name.
        self.credentials = bool(self.allowed) and not self.allow_all

    def allows(self, origin: str | None) -> bool:
        return origin is not None and cross_origin_allowed(origin, self.allowed)

    def response_headers(self, origin: str | None) -> list[Header]:
        """What a (non-preflight) response to ``origin`` carries."""
        if not self.allows(origin):
            return []
        assert origin is not None
        if self.allow_all:
            return [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-expose-headers", EXPOSE_HEADERS),
            ]
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def preflight(
        self, origin: str | None, method: str | None, request_headers: str | None
    ) -> tuple[int, list[Header], str | None]:
        """Answer a preflight: status, headers, and why it is refused (None if it is not)."""
        if not self.allows(origin):
            return 400, [], "this origin is not allowed"
        if (method or "").upper() not in ALLOW_METHODS:
            return 400, [], f"method {method!r} is not allowed"
        asked = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
        refused = [h for h in asked if h not in ALLOW_HEADERS]
        if refused:
            return 400, [], f"header {refused[0]!r} is not allowed"
        assert origin is not None
        headers = [
            (b"access-control-allow-origin", b"*" if self.allow_all else origin.encode("latin-1")),
            (b"access-control-allow-methods", ", ".join(ALLOW_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOW_HEADERS).encode()),
            (b"access-control-max-age", MAX_AGE),
        ]
        if not self.allow_all:
            headers.append((b"vary", b"Origin"))
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return 200, headers, None
