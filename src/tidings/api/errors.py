"""JSON error bodies (SPEC §3) for every error, and never a stack trace."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from tidings.errors import TidingsError
from tidings.streams.answers import error_headers

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger("tidings.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "limit_exceeded",
}


def _headers(exc: TidingsError) -> dict[str, str]:
    # Retry-After, as every transport gives it (the content type is the response's own).
    return {
        name.decode(): value.decode()
        for name, value in error_headers(exc)
        if name != b"content-type"
    }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    async def tidings_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TidingsError)
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message, _headers(exc), **exc.details())

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "message": error.get("msg", ""),
                "type": error.get("type", ""),
            }
            for error in exc.errors()
        ]
        first = fields[0] if fields else {"loc": [], "message": "invalid request"}
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "request"
        return error_response(400, "invalid_request", f"{where}: {first['message']}", fields=fields)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only; a path
            # served by several routes (GET, PATCH, DELETE) allows all of theirs.
            allowed = _allowed(app, request)
            if allowed:
                headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
                headers["allow"] = ", ".join(allowed)
        return error_response(exc.status_code, code, str(exc.detail), headers)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")

    app.add_exception_handler(TidingsError, tidings_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, crash)


def _allowed(app: FastAPI, request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allowed", None)
    if table is None:
        table = []
        for path, item in app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))
            if "{channel}" in path:  # a channel name may hold slashes
                regex = regex.replace("[^/]+", ".+", 1)
            methods = sorted(m.upper() for m in item if m in _METHODS)
            table.append((re.compile(regex), methods))
        app.state.allowed = table
    for compiled, allowed in table:
        if compiled.fullmatch(request.url.path):
            return allowed
    return []


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
