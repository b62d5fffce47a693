"""Logging: human-readable lines by default, JSON lines for machines.

Lines about a connection carry its ``connection_id``; lines written while serving an
HTTP request carry its ``request_id`` (taken from a context variable the request-id
middleware sets). Nothing here ever formats a token or key: callers pass identities,
never credentials. The servers underneath do log request lines, headers and frames
(uvicorn's ``"WebSocket /ws?token=…" [accepted]``, and at debug level every handshake
header and a preview of every frame), so :class:`RedactCredentials` scrubs those.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = [
    "JSONFormatter",
    "RedactCredentials",
    "TextFormatter",
    "choose_request_id",
    "configure_logging",
    "install_redaction",
    "request_id_var",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tidings_request_id", default=None
)


def choose_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's id: the client's ``X-Request-ID`` if it is sane, else a new one."""
    for key, value in headers:
        if key == b"x-request-id":
            candidate = value.decode("latin-1")
            if 0 < len(candidate) <= 64 and candidate.isprintable():
                return candidate
            break
    return secrets.token_hex(8)


_CONTEXT_FIELDS = ("connection_id", "client_id", "request_id", "channel", "reason", "transport")


def _context(record: logging.LogRecord) -> dict[str, Any]:
    fields = {name: getattr(record, name) for name in _CONTEXT_FIELDS if hasattr(record, name)}
    if "request_id" not in fields:
        rid = request_id_var.get()
        if rid is not None:
            fields["request_id"] = rid
    return fields


class TextFormatter(logging.Formatter):
    """``12:00:00 INFO tidings.hub: message [connection_id=… request_id=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _context(record)
        if fields:
            line += " [" + " ".join(f"{key}={value}" for key, value in fields.items()) + "]"
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


REDACTED = "[redacted]"

_SECRET_PATTERNS = (
    re.compile(r"(?i)(token=)[^&\s;,\"'#]+"),  # ?token=…, access_token cookie
    re.compile(r"(?i)(bearer\s+)[^\s,\"']+"),  # Authorization: Bearer …
    re.compile(r"(\"token\"\s*:\s*\")[^\"]*"),  # {"type": "refresh", "token": "…"}
    re.compile(r"()eyJ[\w-]*\.[\w-]*\.[\w-]*"),  # anything else shaped like a JWT
)
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by ``[redacted]``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


def _frame_summary(value: object) -> object:
    """A WebSocket frame as its kind and size: a preview may hold a token's tail."""
    kind, data = getattr(getattr(value, "opcode", None), "name", None), getattr(value, "data", b"")
    if kind not in ("TEXT", "BINARY", "CONT") or not isinstance(data, bytes | bytearray):
        return value
    return f"{kind} [{len(data)} bytes]"


class RedactCredentials(logging.Filter):
    """Scrub tokens and keys from a record's message and arguments, in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            args: list[object] = []
            for arg in record.args:
                arg = _frame_summary(arg)
                if isinstance(arg, str):
                    secret_header = bool(args) and str(args[-1]).lower() in _SECRET_HEADERS
                    arg = REDACTED if secret_header else redact(arg)
                args.append(arg)
            record.args = tuple(args)
        elif isinstance(record.args, dict):
            record.args = {
                key: redact(value) if isinstance(value, str) else value
                for key, value in record.args.items()
            }
        return True


def install_redaction() -> None:
    """Scrub credentials from what uvicorn and websockets log. Idempotent.

    A filter on these loggers runs before any handler, whoever configured the handlers
    (``tidings serve``, an embedding application, a test's log capture).
    """
    for name in ("uvicorn.error", "uvicorn.access", "websockets.server", "tidings.dataplane"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Route tidings' and uvicorn's loggers through one handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactCredentials())
    install_redaction()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
