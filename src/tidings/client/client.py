"""The asyncio client: connections, reconnection with backoff, and delivery to consumers.

The protocol state lives in :mod:`tidings.client.session`; this module only moves bytes
between sockets and those sessions, runs the reconnect loop and hands events to
:class:`Subscription` iterators and handlers. It never parses a frame itself.

Topology: over WebSocket one connection carries every channel (each channel subscribed
once, with the union of its consumers' type filters; consumers filter again locally).
Over SSE each consumer (each :meth:`Client.subscribe` iterator, each :meth:`Client.on`
handler) has its own stream with its own type filter and cursor, because an SSE stream's
channels and types are fixed when it starts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import logging
import random as _random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import orjson

from tidings.client.backoff import Backoff
from tidings.client.errors import (
    ClientClosed,
    ClientError,
    ConnectionFailed,
    RequestError,
    Reset,
)
from tidings.client.session import (
    Action,
    Closing,
    Deliver,
    ErrorNotice,
    Event,
    Opened,
    Reply,
    ResetNotice,
    Send,
    SSEStreamSession,
    Subscribed,
    SubscribeDeferred,
    SubscribeFailed,
    WebSocketSession,
    close_reason,
    should_reconnect,
)
from tidings.core.channels import validate_channel, validate_type
from tidings.errors import BadRequest

__all__ = ["Client", "Handle", "Handler", "Status", "StatusChange", "Subscription", "TokenProvider"]

logger = logging.getLogger("tidings.client")

#: A token: a string, or a function returning one (or an awaitable of one), called before
#: every connection attempt so that a reconnect can use a fresh token.
TokenProvider = str | Callable[[], str | Awaitable[str]] | None
#: An event handler for :meth:`Client.on`; may be a coroutine function.
Handler = Callable[[Event], Any]


class Status(StrEnum):
    """The state of a client's connection, as reported to ``on_status``."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status report.

    ``reason``: why the connection ended (``reconnecting``, ``failed``). ``attempt`` and
    ``delay``: the reconnection attempt (1-based) and the backoff delay before it.
    ``channel``: over SSE, the channel of the stream that changed (``None`` over WebSocket).
    """

    status: Status
    reason: str | None = None
    attempt: int = 0
    delay: float | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one connection ended."""

    reason: str
    reconnect: bool
    worked: bool


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT, read without verification (only to schedule a refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


class _Consumer:
    """One receiver of a channel's events: an iterator's queue or a handler."""

    def __init__(self, channel: str, types: frozenset[str] | None) -> None:
        self.channel = channel
        self.types = types

    def wants(self, event: Event) -> bool:
        return self.types is None or event.type in self.types

    async def deliver(self, event: Event) -> None:
        raise NotImplementedError

    async def reset(self, reset: Reset) -> None:
        raise NotImplementedError

    def finish(self, error: ClientError | None) -> None:
        raise NotImplementedError


class Subscription(_Consumer):
    """An async iterator of one channel's events (see :meth:`Client.subscribe`).

    Without an ``on_reset`` callback on the client, a :class:`Reset` is *raised* from
    ``__anext__``; the subscription stays usable, so catch it, refetch the channel's state
    and iterate again. :class:`ConnectionFailed` is raised when the client gives up;
    iteration ends when the client (or the subscription) is closed.
    """

    def __init__(
        self, client: Client, channel: str, types: frozenset[str] | None, max_queue: int
    ) -> None:
        super().__init__(channel, types)
        self._client = client
        self._queue: asyncio.Queue[Event | ClientError | None] = asyncio.Queue(max_queue)
        self._ready = asyncio.Event()
        self._ended: ClientError | bool | None = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._ended is not False and self._queue.empty():
            if self._ended is None or self._ended is True:
                raise StopAsyncIteration
            raise self._ended
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, ClientError):
            raise item
        return item

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ready(self, timeout: float | None = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the subscription is in place on the hub, so that every event
        published from now on will be delivered (raise ``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def close(self) -> None:
        """Stop receiving; a pending or later ``__anext__`` ends the iteration."""
        self.finish(None)
        await self._client._remove(self)

    async def deliver(self, event: Event) -> None:
        if self._ended is False and self.wants(event):
            # Bounded: a consumer that does not keep up holds the reader back, and the
            # hub's slow-consumer policy (disconnect, then resume) takes over.
            await self._queue.put(event)

    async def reset(self, reset: Reset) -> None:
        if self._ended is False:
            await self._queue.put(reset)

    def finish(self, error: ClientError | None) -> None:
        if self._ended is not False:
            return
        self._ended = error if error is not None else True
        self._ready.set()
        if error is None:
            # Closed by the application: what is queued is no longer wanted, and a reader
            # blocked on the full queue must be let go.
            while not self._queue.empty():
                self._queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            # Full (only on failure): _ended is raised once the queue has drained.
            self._queue.put_nowait(error)


class Handle(_Consumer):
    """A handler registered with :meth:`Client.on`."""

    def __init__(
        self, channel: str, types: frozenset[str] | None, handler: Handler, client: Client
    ) -> None:
        super().__init__(channel, types)
        self.handler = handler
        self._client = client
        self._ready = asyncio.Event()

    async def ready(self, timeout: float | None = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the handler's channel is subscribed on the hub."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def remove(self) -> None:
        """Stop calling the handler."""
        await self._client._remove(self)

    async def deliver(self, event: Event) -> None:
        if not self.wants(event):
            return
        try:
            await _maybe_await(self.handler(event))
        except Exception:
            logger.exception("handler for %s failed on event %s", self.channel, event.id)

    async def reset(self, reset: Reset) -> None:
        logger.warning("reset on %s (%s) and no on_reset callback is set", reset.channel, reset)

    def finish(self, error: ClientError | None) -> None:
        if error is not None:
            logger.warning("handler for %s stopped: %s", self.channel, error)
        self._ready.set()


class Client:
    """A tidings client over WebSocket (default) or SSE.

    ::

        async with Client("http://127.0.0.1:8000", token=get_token) as client:
            async for event in client.subscribe("alerts", types=["disk_full"]):
                ...

    ``url`` is the hub's base URL (``http(s)://`` or ``ws(s)://``, with any mount prefix).
    ``token`` is a string or a function returning one (sync or async), called before every
    connection attempt. ``backoff`` sets the reconnect schedule; ``sleep``, ``clock`` and
    ``random`` are the timer, the clock and the jitter source of that schedule (injectable
    for tests).
    ``on_status`` receives a :class:`StatusChange` on every status change; ``on_reset``,
    when set, receives every :class:`Reset` instead of the iterators raising it. Both may
    be coroutine functions.
    """

    def __init__(
        self,
        url: str,
        *,
        token: TokenProvider = None,
        transport: str = "websocket",
        backoff: Backoff | None = None,
        on_status: Callable[[StatusChange], Any] | None = None,
        on_reset: Callable[[Reset], Any] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
        ping_interval: float | None = 15.0,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_queue: int = 1000,
        max_message_size: int = 1 << 20,
    ) -> None:
        if transport not in ("websocket", "sse"):
            raise ValueError("transport must be 'websocket' or 'sse'")
        parts = urlsplit(url.rstrip("/"))
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        if scheme not in ("http", "https"):
            raise ValueError("url must start with http://, https://, ws:// or wss://")
        self.base_url = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
        self.ws_url = urlunsplit(
            ("wss" if scheme == "https" else "ws", parts.netloc, parts.path + "/ws", "", "")
        )
        self.transport = transport
        self.backoff = backoff or Backoff()
        self._clock = clock
        self.status: Status = Status.CLOSED
        #: Round-trip time of the last ``ping`` answered, in seconds (``None`` before).
        self.latency: float | None = None
        self._token_provider = token
        self._on_status = on_status
        self._on_reset = on_reset
        self._sleep = sleep
        self._random = random
        self._ping_interval = ping_interval
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self._max_queue = max_queue
        self._max_message_size = max_message_size
        self._consumers: dict[str, list[_Consumer]] = {}
        self._http: httpx.AsyncClient | None = None
        self._ws_link: _WebSocketLink | None = None
        self._sse_links: dict[_Consumer, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._started = False

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Start the client (``async with`` does it). Over WebSocket this starts the
        connection loop; it returns at once, the connection comes up in the background."""
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._started:
            return
        self._started = True
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self._request_timeout, connect=self._open_timeout),
            trust_env=False,
            verify=_tls_context(),
        )
        if self.transport == "websocket":
            self._ws_link = _WebSocketLink(self)
            self._ws_link.task = self._spawn(self._supervise(self._ws_link, None))

    async def close(self) -> None:
        """Close every connection; iterators end, pending requests raise ClientClosed."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for consumers in self._consumers.values():
            for consumer in consumers:
                consumer.finish(None)
        self._consumers.clear()
        if self._http is not None:
            await self._http.aclose()
        await self._set_status(StatusChange(Status.CLOSED))

    # --- consuming -------------------------------------------------------------------

    def subscribe(
        self, channel: str, *, types: Iterable[str] | None = None, since: str | None = None
    ) -> Subscription:
        """An async iterator of ``channel``'s events, optionally only of ``types``.

        ``since``: resume after this event id (WebSocket) or SSE cursor; ``None`` starts
        with live events. Over WebSocket it only applies when the client does not follow
        the channel yet. Use ``await sub.ready()`` to wait until the hub has it in place.
        """
        subscription = Subscription(self, channel, _types(types), self._max_queue)
        self._add(subscription, since)
        return subscription

    def on(self, channel: str, type: str = "*", handler: Handler | None = None) -> Any:  # noqa: A002
        """Call ``handler(event)`` for ``channel``'s events of ``type`` (``"*"``: all).

        Returns a :class:`Handle` (``await handle.ready()``, ``await handle.remove()``).
        Without ``handler`` it is a decorator: ``@client.on("alerts", "disk_full")``.
        Handlers run in the connection's reader, in order: a slow handler holds back the
        events after it. Resets go to ``on_reset`` (logged when there is none).
        """
        if handler is None:

            def decorator(fn: Handler) -> Handler:
                self.on(channel, type, fn)
                return fn

            return decorator
        handle = Handle(channel, _types([type]), handler, self)
        self._add(handle, None)
        return handle

    def _add(self, consumer: _Consumer, since: str | None) -> None:
        if self._closed or not self._started:
            raise ClientClosed("use the client inside 'async with' (or call connect() first)")
        try:
            validate_channel(consumer.channel)
            for name in consumer.types or ():
                validate_type(name)
        except BadRequest as exc:
            raise ValueError(str(exc)) from None
        self._consumers.setdefault(consumer.channel, []).append(consumer)
        if self._ws_link is not None:
            self._ws_link.follow(consumer.channel, self._union_types(consumer.channel), since)
        else:
            link = _SSELink(self, consumer, since)
            self._sse_links[consumer] = self._spawn(self._supervise(link, consumer.channel))

    async def _remove(self, consumer: _Consumer) -> None:
        consumers = self._consumers.get(consumer.channel, [])
        if consumer in consumers:
            consumers.remove(consumer)
        if not consumers:
            self._consumers.pop(consumer.channel, None)
        if self._ws_link is not None:
            if consumers:
                self._ws_link.follow(consumer.channel, self._union_types(consumer.channel))
            else:
                self._ws_link.unfollow(consumer.channel)
        task = self._sse_links.pop(consumer, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _union_types(self, channel: str) -> frozenset[str] | None:
        union: set[str] = set()
        for consumer in self._consumers.get(channel, []):
            if consumer.types is None:
                return None
            union |= consumer.types
        return frozenset(union)

    async def _dispatch(self, consumers: list[_Consumer], action: Deliver | ResetNotice) -> None:
        if isinstance(action, Deliver):
            for consumer in consumers:
                await consumer.deliver(action.event)
            return
        reset = Reset(action.channel, action.reason, action.position)
        if self._on_reset is not None:
            try:
                await _maybe_await(self._on_reset(reset))
            except Exception:
                logger.exception("on_reset callback failed")
            return
        for consumer in consumers:
            await consumer.reset(reset)

    # --- publishing and requests -----------------------------------------------------

    async def publish(self, channel: str, type: str, data: Any) -> Event:  # noqa: A002
        """Publish one event; return it as stored. Over WebSocket it goes through the
        connection (waiting for it to come up); over SSE as ``POST /api/v1/publish``."""
        if self._ws_link is None:
            http = self._require_http()
            headers = await self._auth_headers()
            response = await http.post(
                "/api/v1/publish",
                json={"channel": channel, "type": type, "data": data},
                headers=headers,
            )
            if response.status_code != 201:
                raise RequestError(*_http_error(response))
            return Event.from_wire(response.json())
        reply = await self._ws_link.request(
            {"type": "publish", "channel": channel, "event": type, "data": data}
        )
        return Event.from_wire(reply["event"])

    async def ping(self) -> float:
        """Measure one round trip (WebSocket ``ping``/``pong``; over SSE a ``GET /health``),
        store it in :attr:`latency` and return it, in seconds."""
        started = time.monotonic()
        if self._ws_link is not None:
            await self._ws_link.request({"type": "ping"})
        else:
            response = await self._require_http().get("/health")
            response.raise_for_status()
        self.latency = time.monotonic() - started
        return self.latency

    async def command(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """Run an application command on the hub (WebSocket only); return its result."""
        if self._ws_link is None:
            raise RequestError("unsupported", "commands need the WebSocket transport")
        reply = await self._ws_link.request({"type": "command", "name": name, "args": args or {}})
        return reply.get("data")

    # --- internals -------------------------------------------------------------------

    def _require_http(self) -> httpx.AsyncClient:
        if self._http is None or self._closed:
            raise ClientClosed("the client is not open")
        return self._http

    async def _token(self) -> str | None:
        provider = self._token_provider
        if provider is None or isinstance(provider, str):
            return provider
        return str(await _maybe_await(provider()))

    async def _auth_headers(self) -> dict[str, str]:
        token = await self._token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _set_status(self, change: StatusChange) -> None:
        self.status = change.status
        if self._on_status is not None:
            try:
                await _maybe_await(self._on_status(change))
            except Exception:
                logger.exception("on_status callback failed")

    async def _supervise(self, link: _Link, channel: str | None) -> None:
        """The reconnect loop: connect, and after each loss back off and resume."""
        attempt = 0
        await self._set_status(StatusChange(Status.CONNECTING, channel=channel))
        while True:
            try:
                token = await self._token()
            except Exception as exc:
                outcome = _Outcome(f"token_provider_failed: {exc!r}", True, False)
            else:
                started = self._clock()
                try:
                    outcome = await link.run_once(token)
                except Exception as exc:
                    # A failure no transport foresaw must not end the loop silently and
                    # leave the client "reconnecting" for ever: log it and go on.
                    logger.exception("connection attempt failed unexpectedly")
                    outcome = _Outcome(f"unexpected: {type(exc).__name__}", True, False)
                if outcome.worked and self._clock() - started >= self.backoff.stable_after:
                    attempt = 0
            if (
                not outcome.reconnect
                and outcome.reason == "token_expired"
                and callable(self._token_provider)
            ):
                # The token was stale when it reached the hub (a lapsed session, a slow
                # network): the provider is asked again on the next attempt.
                outcome = _Outcome(outcome.reason, True, outcome.worked)
            if not outcome.reconnect:
                await self._fail(link, ConnectionFailed(outcome.reason), channel)
                return
            if self.backoff.exhausted(attempt):
                error = ConnectionFailed("attempts_exhausted", outcome.reason)
                await self._fail(link, error, channel)
                return
            delay = self.backoff.delay(attempt, self._random)
            attempt += 1
            await self._set_status(
                StatusChange(Status.RECONNECTING, outcome.reason, attempt, delay, channel)
            )
            await self._sleep(delay)

    async def _fail(self, link: _Link, error: ConnectionFailed, channel: str | None) -> None:
        link.failed(error)
        for consumer in link.consumers():
            consumer.finish(error)
        await self._set_status(StatusChange(Status.FAILED, error.reason, channel=channel))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The certificate-verifying TLS context every client of this process shares.

    Building one loads the CA bundle: about 20 ms of CPU (httpx builds one per
    ``AsyncClient`` by default), which dominated connecting thousands of clients from one
    process. A context is safe to share; its settings never change after this.
    """
    return httpx.create_ssl_context()


def _types(types: Iterable[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    wanted = frozenset(types)
    return None if not wanted or "*" in wanted else wanted


def _http_error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200]


class _Link:
    """One logical connection that the reconnect loop runs again and again."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def run_once(self, token: str | None) -> _Outcome:
        raise NotImplementedError

    def consumers(self) -> list[_Consumer]:
        raise NotImplementedError

    def failed(self, error: ConnectionFailed) -> None:
        """The client gave up on this link."""


class _WebSocketLink(_Link):
    """Every channel over one WebSocket; the state lives in a :class:`WebSocketSession`."""

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.session = WebSocketSession()
        self.task: asyncio.Task[Any] | None = None
        self._ws: Any = None
        self._open = asyncio.Event()
        self._gone: ConnectionFailed | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._in_place: set[str] = set()

    def consumers(self) -> list[_Consumer]:
        return [c for consumers in self.client._consumers.values() for c in consumers]

    def failed(self, error: ConnectionFailed) -> None:
        self._gone = error
        self._open.set()

    def follow(self, channel: str, types: frozenset[str] | None, since: str | None = None) -> None:
        actions = self.session.follow(channel, types, since)
        self._send_soon(actions)
        if not actions and channel in self._in_place:
            # Already subscribed with these types: a new consumer is in place at once.
            self._mark_ready(channel)

    def _mark_ready(self, channel: str) -> None:
        for consumer in self.client._consumers.get(channel, []):
            if isinstance(consumer, Subscription | Handle):
                consumer._ready.set()

    def unfollow(self, channel: str) -> None:
        self._in_place.discard(channel)
        self._send_soon(self.session.unfollow(channel))

    def _send_soon(self, actions: list[Action]) -> None:
        ws = self._ws
        for action in actions:
            if isinstance(action, Send) and ws is not None:
                self.client._spawn(self._send_quietly(ws, action.message))

    @staticmethod
    async def _send_quietly(ws: Any, message: dict[str, Any]) -> None:
        # A lost connection is not this sender's problem: the next one resubscribes.
        with contextlib.suppress(Exception):
            await ws.send(orjson.dumps(message).decode())

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` with a fresh id once connected; return the reply."""
        client = self.client
        async with asyncio.timeout(client._request_timeout):
            while True:
                if client._closed:
                    raise ClientClosed("the client is closed")
                if self._gone is not None:
                    raise self._gone
                await self._open.wait()
                if self._ws is not None and self.session.open:
                    break
                await asyncio.sleep(0)
            from websockets.exceptions import ConnectionClosed

            rid = self.session.request_id()
            text = orjson.dumps({**message, "id": rid}).decode()
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            # Registered before sending: the reply can arrive while send() waits.
            self._pending[rid] = future
            try:
                try:
                    await self._ws.send(text)
                except ConnectionClosed:
                    raise RequestError("connection_lost", "the connection was lost") from None
                reply = await future
            finally:
                self._pending.pop(rid, None)
                # The reader may have failed the future while send() waited, and this
                # request then ended without awaiting it (the send failed, or the caller
                # was cancelled): take its error, or asyncio reports it as never retrieved.
                if future.done() and not future.cancelled():
                    future.exception()
        if reply.get("type") == "error":
            raise RequestError(str(reply.get("code")), str(reply.get("message")))
        return reply

    async def run_once(self, token: str | None) -> _Outcome:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, WebSocketException

        client = self.client
        url = client.ws_url + ("?" + urlencode({"token": token}) if token else "")
        closing: Closing | None = None
        refusal: ErrorNotice | None = None
        worked = False
        helpers: list[asyncio.Task[Any]] = []
        try:
            async with connect(
                url,
                ssl=_tls_context() if url.startswith("wss:") else None,
                open_timeout=client._open_timeout,
                max_size=client._max_message_size,
                proxy=None,
                close_timeout=2,
            ) as ws:
                self._ws = ws
                try:
                    async for raw in ws:
                        for action in self.session.receive(raw):
                            if isinstance(action, Opened):
                                worked = True
                                self._in_place = set()
                                self._open.set()
                                helpers = self._start_helpers(token)
                                await client._set_status(StatusChange(Status.CONNECTED))
                            elif isinstance(action, Closing):
                                closing = action
                            elif isinstance(action, ErrorNotice):
                                refusal = action
                                logger.warning("hub error: %s %s", action.code, action.message)
                            else:
                                await self._act(ws, action)
                except ConnectionClosed:
                    pass
                code, reason = ws.close_code, ws.close_reason or ""
        except (OSError, WebSocketException, TimeoutError) as exc:
            # WebSocketException, not only InvalidHandshake: a connection dropped during
            # the handshake raises ConnectionClosedError from connect().
            return _Outcome(f"connect_failed: {type(exc).__name__}", True, worked)
        finally:
            self._ws = None
            self._open.clear()
            self.session.lost()
            for task in helpers:
                task.cancel()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(
                        ClientClosed("the client is closed")
                        if client._closed
                        else RequestError("connection_lost", "the connection was lost")
                    )
        if closing is not None:
            return _Outcome(closing.reason, closing.reconnect, worked)
        if refusal is not None and not worked:
            return _Outcome(refusal.code, should_reconnect(code), worked)
        return _Outcome(close_reason(code, reason), should_reconnect(code), worked)

    async def _act(self, ws: Any, action: Action) -> None:
        if isinstance(action, Send):
            await ws.send(orjson.dumps(action.message).decode())
        elif isinstance(action, Reply):
            future = self._pending.get(action.request_id)
            if future is not None and not future.done():
                future.set_result(action.message)
        elif isinstance(action, Subscribed):
            self._in_place.add(action.channel)
            self._mark_ready(action.channel)
        elif isinstance(action, SubscribeDeferred):
            logger.info("subscribing to %s deferred: %s", action.channel, action.code)
            self.client._spawn(self._subscribe_later(action.channel))
        elif isinstance(action, SubscribeFailed):
            error = RequestError(action.code, action.message)
            for consumer in self.client._consumers.pop(action.channel, []):
                consumer.finish(error)
        elif isinstance(action, Deliver):
            await self.client._dispatch(
                list(self.client._consumers.get(action.event.channel, [])), action
            )
        elif isinstance(action, ResetNotice):
            await self.client._dispatch(
                list(self.client._consumers.get(action.channel, [])), action
            )

    async def _subscribe_later(self, channel: str) -> None:
        client = self.client
        await client._sleep(client.backoff.delay(0, client._random))
        self._send_soon(self.session.resubscribe(channel))

    def _start_helpers(self, token: str | None) -> list[asyncio.Task[Any]]:
        helpers = []
        if self.client._ping_interval:
            helpers.append(self.client._spawn(self._pinger(self.client._ping_interval)))
        expiry = _jwt_expiry(token) if token else None
        if expiry is not None and not isinstance(self.client._token_provider, str):
            helpers.append(self.client._spawn(self._refresher(expiry)))
        return helpers

    async def _pinger(self, interval: float) -> None:
        # Our own pings keep the hub from closing a receive-only client as stale, and
        # measure latency.
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ClientError, TimeoutError):
                await self.client.ping()

    async def _refresher(self, expiry: float) -> None:
        while True:
            left = expiry - time.time()
            await asyncio.sleep(max(0.0, left - min(60.0, 0.2 * max(left, 0.0))))
            token = await self.client._token()
            if not token:
                return
            try:
                await self.request({"type": "refresh", "token": token})
            except (ClientError, TimeoutError) as exc:
                logger.warning("token refresh failed: %s", exc)
                return
            new_expiry = _jwt_expiry(token)
            if new_expiry is None or new_expiry <= expiry:
                return
            expiry = new_expiry


class _SSELink(_Link):
    """One consumer's SSE stream; the state lives in an :class:`SSEStreamSession`."""

    def __init__(self, client: Client, consumer: _Consumer, since: str | None) -> None:
        super().__init__(client)
        self.consumer = consumer
        self.session = SSEStreamSession(consumer.channel, consumer.types, since)

    def consumers(self) -> list[_Consumer]:
        return [self.consumer]

    async def run_once(self, token: str | None) -> _Outcome:
        client = self.client
        http = client._require_http()
        params, headers = self.session.request()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        closing: Closing | None = None
        worked = False
        timeout = httpx.Timeout(client._read_timeout, connect=client._open_timeout)
        try:
            async with http.stream(
                "GET",
                "/api/v1/events",
                params=tuple(params),
                headers=headers,
                timeout=timeout,
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    code, _ = _http_error(response)
                    # 429 and 5xx are passing conditions; 4xx will not change by retrying.
                    again = response.status_code == 429 or response.status_code >= 500
                    return _Outcome(code, again, False)
                self.session.opened()
                worked = True
                await client._set_status(
                    StatusChange(Status.CONNECTED, channel=self.consumer.channel)
                )
                async for chunk in response.aiter_raw():
                    for action in self.session.feed(chunk):
                        if isinstance(action, Closing):
                            closing = action
                        elif isinstance(action, Subscribed):
                            if isinstance(self.consumer, Subscription | Handle):
                                self.consumer._ready.set()
                        elif isinstance(action, Deliver | ResetNotice):
                            await client._dispatch([self.consumer], action)
        except httpx.TransportError as exc:
            return _Outcome(f"connection_lost: {type(exc).__name__}", True, worked)
        if closing is not None:
            return _Outcome(closing.reason, closing.reconnect, worked)
        return _Outcome("stream_ended", True, worked)
