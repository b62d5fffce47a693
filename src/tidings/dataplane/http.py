"""The little HTTP/1.1 the native data plane speaks: a request head, and responses
rendered to bytes."""

from __future__ import annotations

import http
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["RequestHead", "render_head", "render_response"]


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

    def header_text(self, name: bytes) -> str | None:
        value = self.header(name)
        return None if value is None else value.decode("latin-1")


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
