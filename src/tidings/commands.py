"""Commands (SPEC §5, §8): a client asks the application to do something, and gets its
answer back — written once for the WebSocket ``command`` message and for
``POST /api/v1/commands``.

:class:`Commands` resolves a name to the in-process handler registered with
``@hub.command(name)`` or, when none is, to the application's ``command_url``; it checks
the caller's ``commands`` patterns first. Handlers of the application run here, so what
they raise is turned into the hub's errors: a :class:`~tidings.errors.TidingsError`
passes through with its code, anything else becomes ``command_failed`` and is logged,
never sent.

Forwarding is split in two: :func:`forward_body` and :func:`read_reply` are Sans-I/O
(what to send, what an answer means); :class:`HttpForwarder` only moves the bytes, with
one HTTP client for the hub's lifetime. Nothing here may log the command secret or
send a client what the application's errors contain beyond a bounded message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tidings.auth.policy import authorize_command
from tidings.errors import (
    CommandFailed,
    CommandTimeout,
    CommandUnavailable,
    NotFound,
    TidingsError,
)
from tidings.identity import Identity
from tidings.signing import secret_key, signed_headers

__all__ = [
    "MAX_REPLY_SIZE",
    "CommandCall",
    "CommandHandler",
    "Commands",
    "Forwarder",
    "HttpForwarder",
    "commands_from_settings",
    "forward_body",
    "read_reply",
]

log = logging.getLogger("tidings.commands")

CommandHandler = Callable[[Identity, dict[str, Any]], Awaitable[Any]]

#: Bytes of an application's answer the hub reads at most.
MAX_REPLY_SIZE = 1024 * 1024
#: Characters of an application's error message passed on to the client.
MAX_ERROR_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class CommandCall:
    """One command as a client asked for it, whichever way it came."""

    name: str
    identity: Identity
    args: dict[str, Any] = field(default_factory=dict)
    #: The connection it came over (WebSocket), or the one a plain HTTP caller named.
    connection_id: str | None = None
    #: The client's request id (the WebSocket message's ``id``), echoed in errors.
    request_id: str | int | None = None


Forwarder = Callable[[CommandCall], Awaitable[Any]]


def forward_body(call: CommandCall) -> bytes:
    """The JSON an application's command URL receives."""
    return orjson.dumps(
        {
            "name": call.name,
            "args": call.args,
            "client_id": call.identity.client_id,
            "tenant": call.identity.tenant,
            "connection_id": call.connection_id,
            "request_id": call.request_id,
        }
    )


def _error_message(status: int, body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):  # tidings' own shape: {"error": {"code", "message"}}
        error = error.get("message")
    if isinstance(error, str) and error.strip():
        message = error.strip()
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[: MAX_ERROR_MESSAGE - 1] + "…"
        return message
    return f"the application answered {status}"


def read_reply(status: int, body: bytes) -> Any:
    """The result an application's answer carries; :class:`CommandFailed` when it
    answered an error (with its ``{"error": "…"}`` message) or something not JSON."""
    if not 200 <= status < 300:
        raise CommandFailed(_error_message(status, body))
    if not body.strip():
        return None  # 204, or an empty 200: a command with nothing to say
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CommandFailed(
            f"the application answered {status} with a body that is not JSON"
        ) from None


class HttpForwarder:
    """POSTs a command to the application's URL, signed when a secret is configured."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        # Only the key is kept; the secret's text is never held, logged or shown.
        self._key = secret_key(secret) if secret else None
        self._client = client
        self._owns_client = client is None

    def _http(self) -> httpx.AsyncClient:
        # Made on first use, in the loop that serves; closed when the hub stops.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._client

    async def __call__(self, call: CommandCall) -> Any:
        body = forward_body(call)
        headers = {"content-type": "application/json"}
        if self._key is not None:
            headers.update(signed_headers(self._key, body))
        try:
            async with asyncio.timeout(self.timeout):
                status, reply = await self._post(body, headers)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("command %r: no answer within %.1fs", call.name[:100], self.timeout)
            raise CommandTimeout(
                f"the application did not answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            log.warning("command %r: %s", call.name[:100], type(exc).__name__)
            raise CommandUnavailable(
                "the application's command URL cannot be reached", retry_after=5
            ) from None
        if not 200 <= status < 300:
            log.warning("command %r: the application answered %d", call.name[:100], status)
        return read_reply(status, reply)

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self._http().stream("POST", self.url, content=body, headers=headers) as r:
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > MAX_REPLY_SIZE:
                    raise CommandFailed(f"the application's answer is over {MAX_REPLY_SIZE} bytes")
                chunks.append(chunk)
            return r.status_code, b"".join(chunks)

    async def aclose(self) -> None:
        """Close the HTTP client (the hub stops); a later command opens a new one."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class Commands:
    """The commands of one hub: in-process handlers first, then the forwarder."""

    def __init__(self, forwarder: Forwarder | None = None, *, timeout: float = 10.0) -> None:
        self.handlers: dict[str, CommandHandler] = {}
        self.forwarder = forwarder
        #: Seconds an in-process handler may take (the forwarder bounds its own calls).
        self.timeout = timeout

    def register(self, name: str, handler: CommandHandler) -> None:
        self.handlers[name] = handler

    async def run(self, call: CommandCall) -> Any:
        """The result of ``call``; a :class:`TidingsError` carrying its request id if not."""
        try:
            return await self._run(call)
        except TidingsError as exc:
            exc.request_id = call.request_id
            raise

    async def _run(self, call: CommandCall) -> Any:
        authorize_command(call.identity, call.name)
        handler = self.handlers.get(call.name)
        if handler is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    return await handler(call.identity, call.args)
            except TidingsError:
                raise
            except TimeoutError:
                log.warning("command %r: no answer within %.1fs", call.name[:100], self.timeout)
                raise CommandTimeout(
                    f"the command did not finish within {self.timeout:g} s"
                ) from None
            except Exception:
                log.exception(
                    "command %r failed",
                    call.name[:100],
                    extra={"client_id": call.identity.client_id},
                )
                raise CommandFailed("the command failed") from None
        if self.forwarder is not None:
            return await self.forwarder(call)
        raise NotFound(f"unknown command {call.name[:100]!r}", code="unknown_command")

    async def aclose(self) -> None:
        close = getattr(self.forwarder, "aclose", None)
        if close is not None:
            await close()


def commands_from_settings(url: str | None, secret: str | None, timeout: float) -> Commands:
    """The commands of a hub configured with ``command_url`` (or none)."""
    forwarder = HttpForwarder(url, secret=secret, timeout=timeout) if url else None
    return Commands(forwarder, timeout=timeout)
