"""Answering a raw ASGI HTTP request with a JSON error (SPEC §3)."""

from __future__ import annotations

from starlette.types import Send

from tidings.errors import TidingsError
from tidings.streams.answers import error_body, error_headers

__all__ = ["send_error"]


async def send_error(send: Send, exc: TidingsError) -> None:
    """Answer with ``exc`` as a JSON error."""
    body = error_body(exc)
    headers = [*error_headers(exc), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
