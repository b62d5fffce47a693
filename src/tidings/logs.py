"""Logging: human-readable lines by default, JSON lines for machines.

Lines about a connection carry its ``connection_id``; lines written while serving an
HTTP request carry its ``request_id`` (taken from a context variable the request-id
middleware sets). Nothing here ever formats a token or key: callers pass identities,
never credentials.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import orjson

__all__ = ["JSONFormatter", "TextFormatter", "configure_logging", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tidings_request_id", default=None
)

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


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Route tidings' and uvicorn's loggers through one handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
