"""The Server-Sent Events endpoint as a raw ASGI app: a thin adapter of
:mod:`tidings.streams.sse` (which see for what a stream does)."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from tidings.core.request import facts_from_scope
from tidings.core.routes import StreamRoute
from tidings.core.session import Frame
from tidings.errors import TidingsError
from tidings.streams.services import Streams
from tidings.streams.sse import HEADERS, SSEStream, join
from tidings.transports.answers import send_error
from tidings.transports.outlet import AsgiOutlet, race

__all__ = ["SSEEndpoint"]


def _body(frames: list[Frame]) -> list[Message]:
    return [{"type": "http.response.body", "body": join(frames), "more_body": True}]


def _end(code: int, reason: str) -> Message:
    return {"type": "http.response.body", "body": b"", "more_body": False}


class SSEEndpoint:
    """One SSE stream route (see :mod:`tidings.core.routes`)."""

    def __init__(self, streams: Streams, route: StreamRoute) -> None:
        self.streams = streams
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = SSEStream(self.streams)
        try:
            request = await stream.open(facts_from_scope(scope), self.route)
        except TidingsError as exc:
            await send_error(send, exc)
            return
        try:
            outlet = AsgiOutlet(send, _body, _end)
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": stream.preamble(), "more_body": True})
            stream.start(request, outlet)
            await race(outlet.run(stream.on_drain), _disconnected(receive))
        finally:
            stream.closed()


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
