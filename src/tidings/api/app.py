"""The hub's ASGI app: routes, middleware, error bodies and the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.api.docs import STREAM_PATHS, route_paths
from tidings.api.errors import error_response, install_error_handlers
from tidings.api.models import (
    BatchPublishRequest,
    CommandRequest,
    EventOut,
    FieldErrorOut,
    PublishRequest,
)
from tidings.api.publish import PublishEndpoint
from tidings.api.routes import build_router
from tidings.api.static import mount_static
from tidings.api.webhooks import build_webhook_router
from tidings.core.routes import RouteTable, StreamRoute
from tidings.logs import choose_request_id, install_redaction, request_id_var
from tidings.node import Node
from tidings.streams.cors import Cors
from tidings.streams.services import Streams
from tidings.transports.cors import CorsMiddleware
from tidings.transports.sse import SSEEndpoint
from tidings.transports.websocket import WebSocketEndpoint
from tidings.version import __version__

__all__ = ["build_app", "stream_route"]


class RequestIdMiddleware:
    """Give every HTTP request an id (``X-Request-ID``, kept if the client sent a sane one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = choose_request_id(scope.get("headers", ()))
        token = request_id_var.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class LazyStart:
    """Start the hub on first use when it was mounted without running its lifespan.

    Starlette does not run a mounted app's lifespan, so ``app.mount("/rt",
    hub.asgi_app())`` would otherwise serve a hub that was never started.
    """

    def __init__(self, app: ASGIApp, hub: Node) -> None:
        self.app = app
        self.hub = hub
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and not self.hub.started:
            async with self._lock:
                if not self.hub.started:
                    await self.hub.start()
        await self.app(scope, receive, send)


def stream_route(
    streams: Streams, route: StreamRoute, *, lazy: bool = False
) -> Route | WebSocketRoute:
    """The Starlette route serving ``route`` with the stream cores of ``streams``;
    ``lazy``: it starts the hub on first use (a route in an application's own router)."""
    endpoint: ASGIApp
    if route.kind == "sse":
        endpoint = SSEEndpoint(streams, route)
        endpoint = LazyStart(endpoint, streams.node) if lazy else endpoint
        return Route(route.path, endpoint, methods=["GET"], include_in_schema=False)
    endpoint = WebSocketEndpoint(streams, route)
    return WebSocketRoute(route.path, LazyStart(endpoint, streams.node) if lazy else endpoint)


def build_app(streams: Streams) -> ASGIApp:
    """Build the ASGI app serving the hub of ``streams``."""
    hub = streams.node

    install_redaction()  # uvicorn logs request paths: ?token= must not reach the logs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns = not hub.started
        if owns:
            await hub.start()
        try:
            yield
        finally:
            if owns:
                await hub.stop()

    app = FastAPI(
        title="tidings",
        version=__version__,
        summary="A real-time event hub: publish over HTTP, receive over SSE and WebSocket.",
        docs_url=None,  # served from the package by mount_static, not from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Ahead of the documented FastAPI route, which it serves (see api/publish.py).
    app.router.routes.append(
        Route("/api/v1/publish", PublishEndpoint(hub), methods=["POST"], include_in_schema=False)
    )
    app.router.routes.extend(stream_route(streams, route) for route in streams.routes.routes)
    app.include_router(build_router(hub))
    app.include_router(build_webhook_router(hub))
    app.router.default = _not_found(app.router.default, streams.routes)
    mount_static(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=_DESCRIPTION,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            model: type[BaseModel]
            for model in (
                PublishRequest,
                BatchPublishRequest,
                EventOut,
                CommandRequest,
                FieldErrorOut,
            ):
                components[model.__name__] = model.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
                components.update(components[model.__name__].pop("$defs", {}))
            schema["paths"].update(STREAM_PATHS)
            schema["paths"].update(route_paths(streams.routes.extra))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # Browsers on the allowed origins may call the API and open EventSource cross-origin.
    served = CorsMiddleware(LazyStart(app, hub), Cors(hub.settings.allowed_origins))
    return RequestIdMiddleware(served)


def _not_found(default: ASGIApp, routes: RouteTable) -> ASGIApp:
    """Answer a WebSocket to an unknown path with 404, not the 403 Starlette gives it
    (which reads as an origin refusal). HTTP requests get the usual JSON 404, or 405
    on a stream's path with another method than GET (a plain GET of a WebSocket path
    is 404: it is no WebSocket handshake)."""

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") not in ("GET", "HEAD")
            and routes.match(scope.get("path", "")) is not None
        ):
            answer = error_response(
                405, "method_not_allowed", "Method Not Allowed", {"allow": "GET"}
            )
            await answer(scope, receive, send)
            return
        if scope["type"] != "websocket":
            await default(scope, receive, send)
            return
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})  # the server cannot say
            return
        body = orjson.dumps(
            {"error": {"code": "not_found", "message": f"no WebSocket at {scope['path']!r}"}}
        )
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})

    return not_found


_DESCRIPTION = """
Publish events over HTTP (or from Python with `hub.publish`), receive them over
**Server-Sent Events** (`GET /api/v1/events`) or **WebSocket** (`/ws`). Every channel
keeps its recent history, so a client that reconnects with its last position gets
exactly what it missed, or an explicit `reset` when history no longer reaches back.

Errors are JSON: `{"error": {"code": "invalid_channel", "message": "..."}}`.
The wire protocols, close codes and reconnection strategy are in `docs/protocol.md`.
"""
