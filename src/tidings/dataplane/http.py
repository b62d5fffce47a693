"""The little HTTP/1.1 the native data plane speaks: a request head, as an ASGI-like
scope for the shared admission code, and responses rendered to bytes."""

from __future__ import annotations

import http
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tidings.settings import Settings

__all__ = ["RequestHead", "cors_headers", "render_head", "render_response"]


@dataclass(slots=True)
class RequestHead:
    """A parsed request line and header block."""

    method: str = ""
    url: bytes = b""
    http_version: str = "1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    path: str = ""
    raw_path: bytes = b""
    query_string: bytes = b""
    upgrade: bool = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def split_url(self) -> None:
        raw, _, query = self.url.partition(b"?")
        raw = raw.partition(b"#")[0]
        self.raw_path = raw
        self.query_string = query.partition(b"#")[0]
        path = raw.decode("latin-1")
        self.path = unquote(path) if "%" in path else path

    def scope(
        self,
        kind: str,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        path_params: dict[str, str],
    ) -> dict[str, Any]:
        """The request as the ASGI scope the shared endpoint code reads."""
        return {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": self.http_version,
            "method": self.method,
            "scheme": "ws" if kind == "websocket" else "http",
            "path": self.path,
            "raw_path": self.raw_path,
            "query_string": self.query_string,
            "root_path": "",
            "headers": self.headers,
            "client": client,
            "server": server,
            "path_params": path_params,
        }


def render_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    phrase = http.HTTPStatus(status).phrase.encode()
    lines = [b"HTTP/1.1 %d %s" % (status, phrase)]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def render_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A complete response that closes the connection after it."""
    headers = [
        *(h for h in headers if h[0].lower() not in (b"content-length", b"connection")),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    return render_head(status, headers) + body


def cors_headers(settings: Settings, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """The CORS headers the ASGI app's CORS middleware would add to a simple response."""
    allowed = settings.allowed_origins
    if not allowed or origin is None:
        return []
    text = origin.decode("latin-1")
    allow_all = "*" in allowed
    if not allow_all and text not in allowed:
        return []
    headers = [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", b"X-Request-ID, Retry-After"),
        (b"vary", b"Origin"),
    ]
    if not allow_all:
        headers.append((b"access-control-allow-credentials", b"true"))
    return headers
