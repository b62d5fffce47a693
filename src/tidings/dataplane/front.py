"""The protocol ``tidings serve`` gives uvicorn: streams natively, the rest to ASGI.

Each new connection's first request head is parsed here. A WebSocket upgrade to, or a
``GET`` of, a stream route (:mod:`tidings.core.routes`) is served by the stream cores
of :mod:`tidings.streams`, as the ASGI endpoints are, through the outlets of
:mod:`tidings.dataplane.ws_stream` and :mod:`tidings.dataplane.sse_stream`. Anything else
is handed, with every byte read so far, to uvicorn's own HTTP protocol, which serves it
(and the rest of that keep-alive connection) through the ASGI app.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

from tidings.core.request import RequestFacts, forwarded_peer
from tidings.core.routes import StreamRoute
from tidings.core.websocket import HandshakeError, accept_response, handshake_key
from tidings.dataplane.guard import (
    GuardedHttpProtocol,
    HeadersTooLarge,
    is_headers_too_large,
    linger_close,
    refused_response,
)
from tidings.dataplane.http import RequestHead, render_head, render_response
from tidings.dataplane.plane import DataPlane
from tidings.dataplane.sse_stream import SSEOutlet
from tidings.dataplane.websocket import WebSocketProtocol
from tidings.dataplane.ws_stream import WebSocketOutlet
from tidings.errors import TidingsError
from tidings.logs import choose_request_id, request_id_var
from tidings.streams.admission import check_origin, refusal
from tidings.streams.answers import error_body, error_headers
from tidings.streams.sse import HEADERS, SSEStream
from tidings.streams.websocket import WebSocketStream

__all__ = ["FrontProtocol"]

log = logging.getLogger("tidings.dataplane")


class FrontProtocol(asyncio.Protocol):
    """uvicorn's ``http`` protocol class under ``tidings serve``; see the module docstring.

    Built by uvicorn with the arguments it gives every HTTP protocol, plus the data
    plane (bound with :func:`functools.partial`).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        plane: DataPlane,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        # uvicorn waits for (and shuts down) the protocols in this set.
        self._connections = cast("set[Any]", server_state.connections)
        self.loop = _loop or asyncio.get_running_loop()
        self.plane = plane
        self.transport: asyncio.Transport | None = None
        self._received: list[bytes] = []
        self._size = 0
        # What the parser has taken of the header block: the URL and each header.
        self._parsed_bytes = 0
        self._head = RequestHead()
        self._header_name = b""
        self._parser = httptools.HttpRequestParser(self)
        self._decided = False
        self._refused = False
        # How many received chunks the request head took (the rest follow it).
        self._head_chunks = 0
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        # The first byte is awaited no longer than the idle limit or the header timeout.
        limits = self.plane.limits
        wait = min(self.config.timeout_keep_alive, limits.header_timeout)
        self._idle = self.loop.call_later(wait, self._expired)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and dropped
        if not self._size and self._idle is not None:
            # The request has begun: its header block has the header timeout from here.
            self._idle.cancel()
            self._idle = self.loop.call_later(self.plane.limits.header_timeout, self._expired)
        self._received.append(data)
        self._size += len(data)
        if self._decided:
            return  # kept for whoever takes the connection
        upgrade_at: int | None = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            upgrade_at = int(exc.args[0]) if exc.args else len(data)
        except httptools.HttpParserError as exc:
            if is_headers_too_large(exc):
                self._refuse(431, "Request Header Fields Too Large")
            else:
                self._hand_off()  # uvicorn answers 400
            return
        if self._decided:
            self._head_chunks = len(self._received)
            self._route(upgrade_at)
        elif self._size > self.plane.limits.max_header_size:
            # Refused before parsing more: a huge header costs CPU to parse.
            self._refuse(431, "Request Header Fields Too Large")

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        if self._task is not None:
            self._task.cancel()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close if no request is being served."""
        if not self._decided and self.transport is not None:
            self.transport.close()

    def _expired(self) -> None:
        """No first byte, or no whole request head, in time: close, or answer 408."""
        self._idle = None
        if self._decided or self.transport is None:
            return
        if self._size:
            self._refuse(408, "Request Timeout")
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` and close, reading (and dropping) what still comes."""
        self._decided = self._refused = True
        self._received.clear()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.transport is not None:
            self.transport.write(refused_response(status, reason))
            linger_close(self.transport, self.loop)

    # -- httptools callbacks ------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._head.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # A whole header block in one read never passes the check on received bytes.
        self._count(len(name) + len(value) + 4)
        self._head.headers.append((name.lower(), value))

    def _count(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self.plane.limits.max_header_size:
            raise HeadersTooLarge

    def on_headers_complete(self) -> None:
        head = self._head
        head.method = self._parser.get_method().decode("ascii", "replace")
        head.http_version = self._parser.get_http_version()
        head.upgrade = bool(self._parser.should_upgrade())
        head.split_url()
        self._decided = True

    # -- routing ------------------------------------------------------------------------

    def _route(self, upgrade_at: int | None) -> None:
        head = self._head
        if log.isEnabledFor(logging.DEBUG):
            # As websockets logs a handshake; the redaction filter scrubs credentials.
            log.debug("> %s %s HTTP/%s", head.method, head.url.decode("latin-1"), head.http_version)
            for name, value in head.headers:
                log.debug("> %s: %s", name.decode("latin-1"), value.decode("latin-1"))
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        found = self.plane.streams.routes.match(head.path)
        if found is not None and head.method == "GET" and head.http_version == "1.1":
            route, params = found
            if route.kind == "websocket" and _is_websocket(head):
                # What followed the head in the chunk that ended it.
                leftover = b"" if upgrade_at is None else self._received[-1][upgrade_at:]
                self._task = self.loop.create_task(self._open_websocket(route, params, leftover))
                return
            if route.kind == "sse" and not head.upgrade:
                self._task = self.loop.create_task(self._open_sse(route, params))
                return
        self._hand_off()

    def _hand_off(self) -> None:
        """Give the connection to uvicorn's HTTP protocol, with every byte read so far."""
        self._decided = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        inner = GuardedHttpProtocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
            limits=self.plane.limits,
        )
        transport.set_protocol(inner)
        inner.connection_made(transport)
        inner.data_received(b"".join(self._received))
        self._received.clear()

    def _facts(self, path_params: dict[str, str]) -> RequestFacts:
        assert self.transport is not None
        head = self._head
        peer = _address(self.transport.get_extra_info("peername"))
        if self.plane.proxy_headers:
            # The same client address the ASGI app gets from uvicorn behind a proxy.
            peer = forwarded_peer(peer, head.headers, self.plane.trusted)
        return RequestFacts(
            method=head.method,
            path=head.path,
            query_string=head.query_string,
            headers=head.headers,
            peer=peer,
            path_params=path_params,
        )

    # -- SSE ------------------------------------------------------------------------------

    async def _open_sse(self, route: StreamRoute, path_params: dict[str, str]) -> None:
        transport = self.transport
        assert transport is not None
        plane = self.plane
        rid = choose_request_id(self._head.headers)
        token = request_id_var.set(rid)
        try:
            extra = [
                (b"x-request-id", rid.encode()),
                *plane.cors.response_headers(self._head.header_text(b"origin")),
            ]
            stream = SSEStream(plane.streams)
            outlet = SSEOutlet(stream, transport)
            try:
                request = await stream.open(self._facts(path_params), route)
            except TidingsError as exc:
                if not transport.is_closing():
                    transport.write(
                        render_response(exc.status, [*error_headers(exc), *extra], error_body(exc))
                    )
                    transport.close()
                return
            if _gone(transport, stream):
                return
            self._become(outlet)
            head = render_head(200, [*HEADERS, (b"transfer-encoding", b"chunked"), *extra])
            body = stream.preamble()
            transport.write(head + b"%x\r\n" % len(body) + body + b"\r\n")
            stream.start(request, outlet)
        finally:
            request_id_var.reset(token)

    # -- WebSocket ---------------------------------------------------------------------

    async def _open_websocket(
        self, route: StreamRoute, path_params: dict[str, str], leftover: bytes
    ) -> None:
        transport = self.transport
        assert transport is not None
        streams = self.plane.streams
        try:
            key = handshake_key(self._head.headers)
        except HandshakeError as exc:
            transport.write(render_response(exc.status, error_headers(exc), error_body(exc)))
            transport.close()
            return
        facts = self._facts(path_params)
        try:
            check_origin(streams.node, facts)
        except TidingsError:
            # Refused before the handshake, like the ASGI endpoint: the browser sees 403.
            transport.write(render_response(403, [(b"content-type", b"text/plain")], b""))
            transport.close()
            return
        socket = WebSocketProtocol(max_size=streams.node.settings.max_message_size)
        stream = WebSocketStream(streams)
        outlet = WebSocketOutlet(stream, socket)
        socket.handler = outlet
        try:
            request = await stream.open(facts, route, framed=True)
        except TidingsError as exc:
            if transport.is_closing():
                return
            text, code, reason = refusal(exc)
            transport.write(accept_response(key))
            self._become(socket)
            socket.send_text(text)
            socket.close(code, reason)
            return
        if _gone(transport, stream):
            return
        transport.write(accept_response(key))
        self._become(socket)
        stream.start(request, outlet)
        # Bytes that came with the upgrade request or while it was being admitted.
        leftover += b"".join(self._received[self._head_chunks :])
        if leftover:
            socket.data_received(leftover)

    def _become(self, protocol: asyncio.Protocol) -> None:
        """Hand the transport to the stream's protocol: it is no longer ours."""
        assert self.transport is not None
        self._connections.discard(self)
        self._task = None
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)


def _gone(transport: asyncio.Transport, stream: SSEStream | WebSocketStream) -> bool:
    """Whether the peer left while its stream was being admitted; if so, close what the
    admission opened. (uvloop closes a transport before ``connection_lost`` reaches the
    protocol, so the task that admitted can still be running, and writing to the closed
    transport would raise.)"""
    if not transport.is_closing():
        return False
    stream.closed()
    return True


def _is_websocket(head: RequestHead) -> bool:
    upgrade = head.header(b"upgrade")
    return upgrade is not None and b"websocket" in upgrade.lower()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
