"""The WebSocket endpoint as a raw ASGI app: a thin adapter of
:mod:`tidings.streams.websocket` (which see for what a connection does)."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from tidings.core.request import facts_from_scope
from tidings.core.routes import StreamRoute
from tidings.core.session import Frame
from tidings.errors import TidingsError
from tidings.streams.admission import check_origin, refusal
from tidings.streams.services import Streams
from tidings.streams.websocket import WebSocketStream
from tidings.transports.outlet import AsgiOutlet, race

__all__ = ["WebSocketEndpoint"]


def _messages(frames: list[Frame]) -> list[Message]:
    return [
        {"type": "websocket.send", "bytes": frame}
        if isinstance(frame, bytes)
        else {"type": "websocket.send", "text": frame}
        for frame in frames
    ]


def _close(code: int, reason: str) -> Message:
    return {"type": "websocket.close", "code": code, "reason": reason}


class WebSocketEndpoint:
    """One WebSocket stream route (see :mod:`tidings.core.routes`)."""

    def __init__(self, streams: Streams, route: StreamRoute) -> None:
        self.streams = streams
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        facts = facts_from_scope(scope)
        try:
            check_origin(self.streams.node, facts)
        except TidingsError:
            # Refused before the handshake: the browser sees HTTP 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        stream = WebSocketStream(self.streams)
        try:
            request = await stream.open(facts, self.route, framed=False)
        except TidingsError as exc:
            text, code, reason = refusal(exc)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": text})
            await send(_close(code, reason))
            return
        try:
            await send({"type": "websocket.accept"})
            outlet = AsgiOutlet(send, _messages, _close)
            stream.start(request, outlet)
            await race(outlet.run(stream.on_drain), _read(stream, outlet, receive))
        finally:
            stream.closed()


async def _read(stream: WebSocketStream, outlet: AsgiOutlet, receive: Receive) -> None:
    while True:
        await outlet.reading.wait()
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        payload: str | bytes | None = message.get("text")
        if payload is None:
            payload = message.get("bytes") or b""
        stream.on_message(payload)
