"""uvicorn's HTTP protocol with a bound on every phase of every request.

uvicorn bounds the idle time between keep-alive requests, but not a request that has
begun: a header block trickled byte by byte, or a body sent slowly, holds its connection
for ever, and 10,000 of them exhaust the file descriptors. A header block of any size is
parsed (httptools joins a huge value's pieces over and over: CPU quadratic in its
size). :class:`GuardedHttpProtocol` adds, per request:

* a cap on the header block (``max_header_size``): ``431`` before parsing more, whether
  the block comes in many reads or in one;
* a deadline for the header block from its first byte (``request_header_timeout``), and
  for the first byte of a new connection's first request (uvicorn waits for ever);
* a deadline for the body from the end of the headers (``request_body_timeout``).

A request past a deadline gets ``408`` (or, if its response has started, its connection
closed). A request that is not valid HTTP/1.1 (among others, ``Content-Length`` with
``Transfer-Encoding``, or two ``Content-Length``: the ways to smuggle a request) gets a
JSON ``400`` and its connection closed, so that nothing after it is read as a request.
Bytes that follow a WebSocket upgrade request in the same read go to the WebSocket.
Used for every non-stream request on ``tidings serve``, both data planes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tidings.errors import HeadersTooLarge
from tidings.settings import Settings

__all__ = [
    "GuardedHttpProtocol",
    "HeadersTooLarge",
    "RequestLimits",
    "is_headers_too_large",
    "linger_close",
    "refused_response",
    "request_limits",
]

#: Seconds a refused connection is still read (and what comes discarded) after the
#: answer, so that a client still sending gets the answer rather than a reset.
LINGER = 2.0


def linger_close(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
    """Close after the answer is sent: end our side now, the connection in ``LINGER`` s.

    Closing a socket with unread data makes the kernel send a reset, which can destroy
    the answer before the client reads it; a client still sending a huge header would
    see "connection reset" instead of 431.
    """
    if transport.can_write_eof():
        transport.write_eof()
        loop.call_later(LINGER, transport.close)
    else:  # pragma: no cover - TCP transports can
        transport.close()


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The bounds of one request: header block bytes, header and body seconds."""

    max_header_size: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0


def request_limits(settings: Settings) -> RequestLimits:
    return RequestLimits(
        max_header_size=settings.max_header_size,
        header_timeout=settings.request_header_timeout,
        body_timeout=settings.request_body_timeout,
    )


def is_headers_too_large(exc: httptools.HttpParserError) -> bool:
    """Whether the parser stopped on :class:`HeadersTooLarge`, raised from a parser
    callback when the header block passes its cap: httptools stops parsing there and
    raises its own error with ours as the context."""
    return isinstance(exc.__context__, HeadersTooLarge)


def refused_response(status: int, reason: str, message: str | None = None) -> bytes:
    """A complete ``status`` response that closes the connection, with a JSON error whose
    message is ``message`` (``reason`` when None)."""
    code = {408: "request_timeout", 431: "headers_too_large"}.get(status, "bad_request")
    error = {"code": code, "message": message or reason}
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())
    return (
        head
        + b"content-type: application/json\r\nconnection: close\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


_HEAD, _BODY, _DONE = "head", "body", "done"


class GuardedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with :class:`RequestLimits`; see the module docstring."""

    def __init__(self, *args: Any, limits: RequestLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._phase = _DONE
        self._head_bytes = 0
        # What the parser has taken of the header block: the URL and each header.
        self._parsed_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._pending: bytes | None = None
        self._after_upgrade = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its idle timer only between requests: a connection that never
        # sends a byte would be held for ever. Wait for the first at most that long.
        wait = min(self.timeout_keep_alive, self.limits.header_timeout)
        self.timeout_keep_alive_task = self.loop.call_later(wait, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, but the parser's error is answered as JSON and the bytes that
        # follow a WebSocket upgrade request are kept (see handle_websocket_upgrade).
        if self._refused:
            return  # lingering after a refusal: read and dropped
        if self._phase == _DONE:
            self._head_bytes = 0  # a new request may begin in this chunk
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._after_upgrade = data[int(exc.args[0]) :] if exc.args else b""
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if is_headers_too_large(exc):
                self._refuse(431, "Request Header Fields Too Large")
            else:
                self.send_400_response(f"invalid HTTP request: {exc}")
            return
        if self._phase == _HEAD and self.transport is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_size:
                self._refuse(431, "Request Header Fields Too Large")

    def send_400_response(self, msg: str) -> None:
        # uvicorn's is plain text and closes at once, which can reset the connection
        # before the client reads it; after the answer nothing more is read as HTTP.
        self._refuse(400, "Bad Request", msg)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # A whole header block in one read never passes the check on received bytes.
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self.limits.max_header_size:
            raise HeadersTooLarge

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._parsed_bytes = 0
        self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _DONE
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # The connection becomes a WebSocket: its own protocol bounds it from here.
        self._phase = _DONE
        self._disarm()
        after, self._after_upgrade = self._after_upgrade, b""
        super().handle_websocket_upgrade()
        if after:
            # uvicorn gives the WebSocket protocol the request head only: frames sent
            # with it (or garbage, which must get its protocol error) would be lost.
            cast(asyncio.Protocol, self.transport.get_protocol()).data_received(after)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, reason: str, message: str | None = None) -> None:
        self._disarm()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        in_head = self._phase != _BODY
        if in_head:
            # No cycle of its own yet: the one here, if any, is the previous request's.
            answer = cycle is None or cycle.response_complete
        else:
            answer = cycle is None or not cycle.response_started
        self._refused = True
        if in_head and not answer:
            # The previous request's answer is still being written: ours goes after it.
            self._pending = refused_response(status, reason, message)
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's answer, if any, goes nowhere
        if not answer:
            transport.close()
            return
        transport.write(refused_response(status, reason, message))
        linger_close(transport, self.loop)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        pending, self._pending = self._pending, None
        if pending is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(pending)
            linger_close(self.transport, self.loop)
