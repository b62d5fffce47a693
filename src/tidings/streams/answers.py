"""Error answers (SPEC §3), as bytes any transport can send."""

from __future__ import annotations

import math

import orjson

from tidings.errors import TidingsError

__all__ = ["error_body", "error_headers"]


def error_body(exc: TidingsError) -> bytes:
    """The JSON body of SPEC §3 for ``exc``."""
    return orjson.dumps({"error": {"code": exc.code, "message": exc.message, **exc.details()}})


def error_headers(exc: TidingsError) -> list[tuple[bytes, bytes]]:
    """The headers of an error response for ``exc`` (without its length)."""
    headers = [(b"content-type", b"application/json")]
    if exc.retry_after is not None:
        # Rounded up: a client that waits this long must not be refused again.
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    return headers
