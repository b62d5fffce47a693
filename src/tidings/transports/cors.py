"""CORS for the ASGI app, by the rules of :mod:`tidings.streams.cors`."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.core.request import header
from tidings.streams.cors import Cors

__all__ = ["CorsMiddleware"]


class CorsMiddleware:
    """Answer preflights, and add the CORS headers to responses to allowed origins."""

    def __init__(self, app: ASGIApp, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        origin = header(headers, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        method_asked = header(headers, b"access-control-request-method")
        if scope.get("method") == "OPTIONS" and method_asked is not None:
            status, extra, refused = self.cors.preflight(
                origin, method_asked, header(headers, b"access-control-request-headers")
            )
            body = (
                b""
                if refused is None
                else orjson.dumps({"error": {"code": "cors_refused", "message": refused}})
            )
            extra = [*extra, (b"content-length", b"%d" % len(body))]
            if body:
                extra.append((b"content-type", b"application/json"))
            await send({"type": "http.response.start", "status": status, "headers": extra})
            await send({"type": "http.response.body", "body": body})
            return
        added = self.cors.response_headers(origin)
        if not added:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
