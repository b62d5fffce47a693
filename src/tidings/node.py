"""The hub's engine: publishing, subscribing, connections, lifecycle and commands.

Publishing validates an event and hands it to the broker, which appends it to the store
(assigning its position) and brings it back to :meth:`FanOut.on_event
<tidings.fanout.FanOut.on_event>` on every node. There the local subscribers of the
channel each get the same :class:`~tidings.core.events.EncodedEvent`; sessions only queue
frames, so fan-out never waits for a socket and a slow client never slows anyone else.

:class:`Node` knows no web framework; :class:`tidings.hub.Hub` adds the ASGI app.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Self, overload

import orjson
from pydantic import BaseModel

from tidings.auth.authenticator import Authenticator
from tidings.auth.revocation import Revocations
from tidings.backends import (
    broker_from_url,
    presence_from_url,
    records_for,
    schedules_for,
    store_from_url,
)
from tidings.backends.base import (
    Broker,
    NewEvent,
    Presence,
    Schedules,
    Store,
    StoreLimits,
    backend_failure,
)
from tidings.commands import CommandCall, CommandHandler, commands_from_settings
from tidings.connection import Connection, Transport
from tidings.core.channels import personal_channel, validate_channel, validate_type
from tidings.core.events import Event, Publication, now_timestamp
from tidings.core.history import HistoryPage
from tidings.core.request import Peer
from tidings.core.scheduled import Scheduled, due_time, new_key, new_version, validate_key
from tidings.core.session import Wire
from tidings.errors import (
    BadRequest,
    Forbidden,
    InvalidEvent,
    NotFound,
    TidingsError,
    TooLarge,
    Unavailable,
)
from tidings.fanout import FanOut
from tidings.gate import Gate
from tidings.hooks import ConnectHook
from tidings.identity import Identity
from tidings.nowait import NowaitQueue
from tidings.presence import PresenceTracker
from tidings.ratelimit import Limiter
from tidings.registry import Counters, Registry
from tidings.scheduling import ScheduleRunner
from tidings.serial import Serial
from tidings.settings import Settings
from tidings.sources import Source, source_from_url
from tidings.typed import EventType, EventTypes
from tidings.webhooks.service import WebhookService

__all__ = ["CommandHandler", "Node", "Publication"]

log = logging.getLogger("tidings.hub")

ConnectionCallback = Callable[[Connection], Awaitable[None] | None]

#: How long a client-level revocation is kept when the tokens' expiry is unknown.
REVOCATION_TTL = 24 * 3600.0


class Node:
    """A hub without its web front: see :class:`tidings.hub.Hub`, which is what to use."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        broker: Broker | None = None,
        presence: Presence | None = None,
    ) -> None:
        self.settings = settings or Settings()
        limits = StoreLimits(
            history_size=self.settings.history_size, history_ttl=self.settings.history_ttl
        )
        if broker is not None:
            if store is not None and broker.store is not store:
                raise ValueError("the broker given appends to another store than the one given")
            self.broker: Broker = broker
        else:
            self.broker = broker_from_url(
                self.settings.broker, store or store_from_url(self.settings.store, limits)
            )
        #: Where history is read; the broker appends to it.
        self.store: Store = self.broker.store
        #: Events waiting for their time, kept beside the history (as durable as it is).
        self.schedules: Schedules = schedules_for(self.store)
        self.schedule_runner = ScheduleRunner(self.schedules, self._fire)
        #: Webhook endpoints, their durable outbox, and the workers sending it.
        self.webhooks = WebhookService(
            self.settings, records_for(self.store), self.publish, self._webhooks_changed
        )
        self.registry = Registry(
            max_connections=self.settings.max_connections,
            max_connections_per_client=self.settings.max_connections_per_client,
        )
        self.counters: Counters = self.registry.counters
        #: This node's open connections by id.
        self.connections: dict[str, Connection] = self.registry.connections
        self.fanout = FanOut(
            self.store, history_size=self.settings.history_size, on_change=self._changed
        )
        #: This process's name in the cluster: the ``node`` of its listed connections
        #: and of its metrics, and the owner of its presence entries.
        self.node_id = self.settings.node_id or secrets.token_hex(6)
        self.presence_tracker = PresenceTracker(
            presence or presence_from_url(self.settings.broker),
            self.fanout,
            node=self.node_id,
            listing=self._listing,
        )
        secret = self.settings.command_secret
        #: In-process command handlers, and the application's command URL.
        self.commands = commands_from_settings(
            self.settings.command_url,
            secret.get_secret_value() if secret is not None else None,
            self.settings.command_timeout,
        )
        #: Registered event types (``event_type``, ``--schemas``); see tidings.typed.
        self.event_types = EventTypes(strict=self.settings.strict_types)
        if self.settings.schemas is not None:
            self.event_types.load_directory(self.settings.schemas)
        # What publish_many consults: None while nothing is registered and types are not
        # strict, so that untyped publishing pays one falsy check per batch, nothing more.
        self._typed: EventTypes | None = self.event_types or None
        self.gate = Gate(self.settings)
        self._on_connect: list[ConnectionCallback] = []
        self._on_disconnect: list[ConnectionCallback] = []
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self._source_tasks: set[asyncio.Future[None]] = set()
        #: Server-side subscribe/unsubscribe, applied one at a time in arrival order.
        self._targeting = Serial()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopping = False
        self.nowait: NowaitQueue[Publication] = NowaitQueue(
            self._publish_one, on_failure=self.counters.nowait_failure
        )
        #: What the hub consumes events from (``--source``), started and stopped with it.
        self.sources: list[Source] = [source_from_url(url) for url in self.settings.sources]

    # -- the gate's parts, where embedding code and the API reach them ----------------------

    @property
    def authenticator(self) -> Authenticator:
        return self.gate.authenticator

    @property
    def revocations(self) -> Revocations:
        return self.gate.revocations

    @property
    def connection_limiter(self) -> Limiter:
        return self.gate.connection_limiter

    @property
    def publish_limiter(self) -> Limiter:
        return self.gate.publish_limiter

    @property
    def connect_hook(self) -> ConnectHook | None:
        return self.gate.connect_hook

    @connect_hook.setter
    def connect_hook(self, hook: ConnectHook | None) -> None:
        self.gate.connect_hook = hook

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Connect the backends. Idempotent."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        await self.broker.start(self.fanout.on_event, self._on_control, self.fanout.resync)
        self.presence_tracker.start()
        self.nowait.start()
        self._started = True
        self.schedule_runner.start()
        await self.webhooks.start()
        for source in self.sources:
            await source.start(self)
        log.info(
            "hub started (store %s, broker %s)",
            _scheme(self.settings.store),
            _scheme(self.settings.broker),
        )

    async def stop(self, *, grace: float = 3.0) -> None:
        """Publish what ``publish_nowait`` queued, close every connection with
        ``server_shutdown``, then the backends. Idempotent."""
        if not self._started:
            return
        for source in self.sources:
            await source.stop()
        await self.nowait.flush(grace=grace)
        await self.schedule_runner.stop()
        await self.webhooks.stop()
        await self.close_connections("server_shutdown", grace=grace)
        self._started = False
        await self.nowait.stop()
        await self._targeting.aclose()
        await self.gate.aclose()
        await self.commands.aclose()
        await self.fanout.close()
        await self.presence_tracker.stop()
        await self.broker.close()
        await self.schedules.close()
        await self.store.close()
        log.info("hub stopped")

    async def close_connections(self, reason: str, *, grace: float = 3.0) -> None:
        """Send every connection ``disconnect`` with ``reason``; wait up to ``grace`` s.

        New connections are refused from here on.
        """
        self._stopping = True
        for connection in list(self.connections.values()):
            connection.close(reason)
        await self.registry.all_closed(grace)

    def add_source(self, source: Source) -> Source:
        """Consume ``source`` (a :class:`~tidings.sources.Source`, e.g.
        ``PostgresOutbox(url)``) from when the hub starts (now, if it runs) until it stops."""
        self.sources.append(source)
        if self._started:
            task = asyncio.ensure_future(source.start(self))
            self._source_tasks.add(task)
            task.add_done_callback(self._source_tasks.discard)
        return source

    # -- publishing ----------------------------------------------------------------------

    @property
    def max_batch_size(self) -> int:
        """Events one :meth:`publish_many` takes."""
        return self.settings.max_batch_size

    def _validate(self, publication: Publication) -> NewEvent:
        channel = validate_channel(publication.channel)
        event_type = validate_type(publication.type)
        try:
            size = len(orjson.dumps(publication.data))
        except TypeError as exc:
            raise InvalidEvent(f"data is not JSON-serialisable: {exc}") from None
        if size > self.settings.max_event_size:
            raise TooLarge(
                f"event data is {size} bytes, over the limit of {self.settings.max_event_size}",
                code="event_too_large",
            )
        key = publication.idempotency_key
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
            raise InvalidEvent("idempotency_key must be 1-200 characters")
        return NewEvent(channel, event_type, publication.data, now_timestamp(), key)

    @overload
    async def publish(
        self,
        channel: str,
        type: str = ...,
        data: Any = ...,
        *,
        idempotency_key: str | None = ...,
    ) -> Event: ...

    @overload
    async def publish(
        self,
        channel: str,
        type: str = ...,
        data: Any = ...,
        *,
        at: str | datetime,
        key: str | None = ...,
    ) -> Scheduled: ...

    @overload
    async def publish(
        self,
        channel: str,
        type: str = ...,
        data: Any = ...,
        *,
        delay: float,
        key: str | None = ...,
    ) -> Scheduled: ...

    async def publish(
        self,
        channel: str,
        type: str = "message",  # noqa: A002 - SPEC's name for the event type
        data: Any = None,
        *,
        idempotency_key: str | None = None,
        at: str | datetime | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> Event | Scheduled:
        """Publish one event; return it as stored. Never waits for subscribers.

        With ``at`` (an aware datetime or RFC 3339 text) or ``delay`` (seconds), the event
        is scheduled instead and the :class:`Scheduled` entry returned: see
        :meth:`schedule`.
        """
        if at is not None or delay is not None or key is not None:
            return await self.schedule(channel, type, data, at=at, delay=delay, key=key)
        (event,) = await self.publish_many([Publication(channel, type, data, idempotency_key)])
        return event

    async def schedule(
        self,
        channel: str,
        type: str = "message",  # noqa: A002 - SPEC's name for the event type
        data: Any = None,
        *,
        at: str | datetime | None = None,
        delay: float | None = None,
        key: str | None = None,
    ) -> Scheduled:
        """Publish the event at ``at`` or after ``delay`` seconds, once, on some node.

        Scheduling again under the same ``key`` replaces the pending entry (an expiry
        warning moves when the network is extended); :meth:`cancel_scheduled` drops it.
        The event is checked now as a publish would check it. Durable with a SQLite or
        Redis store: pending entries survive a restart, and one that fell due while
        every node was down fires at start.
        """
        (new,) = self.check([Publication(channel, type, data)])  # refused now, not when due
        now = time.time()
        entry = Scheduled(
            key=new_key() if key is None else validate_key(key),
            channel=new.channel,
            type=new.type,
            data=data,
            at=due_time(at=at, delay=delay, now=now),
            version=new_version(),
        )
        with backend_failure("schedule", "scheduled events cannot be stored right now"):
            await self.schedules.put(entry, limit=self.settings.max_scheduled)
        self.schedule_runner.scheduled(entry.at)
        return entry

    async def cancel_scheduled(self, key: str) -> bool:
        """Drop the pending event scheduled under ``key``; False when there was none."""
        with backend_failure("schedule cancel", "scheduled events cannot be read right now"):
            return await self.schedules.cancel(key) is not None

    async def get_scheduled(self, key: str) -> Scheduled | None:
        """The event pending under ``key``, if any."""
        with backend_failure("schedule read", "scheduled events cannot be read right now"):
            return await self.schedules.get(key)

    async def scheduled(self, *, channel: str | None = None, limit: int = 1000) -> list[Scheduled]:
        """Pending scheduled events (of ``channel``), soonest first."""
        with backend_failure("schedule list", "scheduled events cannot be read right now"):
            return await self.schedules.pending(channel=channel, limit=limit)

    async def _webhooks_changed(self) -> None:
        # Every node re-reads the endpoints now rather than at its next poll.
        with backend_failure("broker control publish", "the broker cannot be reached"):
            await self.broker.publish_control({"type": "webhooks_changed"})

    async def _fire(self, entry: Scheduled) -> None:
        await self.publish_many(
            [Publication(entry.channel, entry.type, entry.data, entry.idempotency_key)]
        )

    async def publish_many(self, publications: Sequence[Publication]) -> list[Event]:
        """Publish a batch in order; all are validated before any is stored."""
        if len(publications) > self.settings.max_batch_size:
            raise TooLarge(
                f"a batch holds at most {self.settings.max_batch_size} events",
                code="batch_too_large",
            )
        if not self._started:
            raise Unavailable("the hub is not started")
        new = [self._validate(p) for p in publications]
        if self._typed is not None:
            self._check_types(new)
        stored = await self.broker.publish(new)
        self.counters.published += sum(created for _, created in stored)
        events = [event for event, _ in stored]
        if self.webhooks.active:
            # Before the publish is acknowledged, and for replays too (the outbox keeps
            # one delivery per event and endpoint): an acknowledged event is never
            # without its deliveries.
            await self.webhooks.enqueue(events)
        return events

    def check(self, publications: Sequence[Publication]) -> list[NewEvent]:
        """Validate events as a publish would (names, size, registered types) without
        publishing them; raise the error a publish would."""
        new = [self._validate(p) for p in publications]
        if self._typed is not None:
            self._check_types(new)
        return new

    def _check_types(self, new: list[NewEvent]) -> None:
        typed = self._typed
        assert typed is not None
        batch = len(new) > 1  # errors name the event's index in a batch
        for index, event in enumerate(new):
            typed.check(event.channel, event.type, event.data, index if batch else None)

    def event_type(
        self,
        name: str,
        model: type[BaseModel] | dict[str, Any],
        *,
        channels: Sequence[str] = (),
    ) -> EventType:
        """Register event type ``name``: publishes of it (HTTP, WebSocket, Python) must
        carry ``data`` that ``model`` (a pydantic model, or a JSON Schema as a dict)
        accepts, or are refused with ``invalid_event`` and the list of field errors.
        ``channels`` (glob patterns) restricts where the type applies; elsewhere it is as
        if unregistered. The model's JSON Schema is what ``/asyncapi.json`` and ``tidings
        schema typescript`` describe. Registering a name again replaces it."""
        if isinstance(model, dict):
            registered = self.event_types.register_schema(name, model, channels=channels)
        else:
            registered = self.event_types.register_model(name, model, channels=channels)
        self._typed = self.event_types
        return registered

    def publish_nowait(
        self,
        channel: str,
        type: str = "message",  # noqa: A002 - SPEC's name for the event type
        data: Any = None,
    ) -> None:
        """Fire-and-forget publish, safe from sync code and from any thread.

        Events are published in call order by one background task. A failure (invalid
        event, backend down, hub not started, backlog of 10,000 full) is logged and
        counted, never raised into the caller.
        """
        if not self._started:
            self.nowait.failed("publish_nowait before the hub started; event dropped")
            return
        self.nowait.put(Publication(channel, type, data))

    async def _publish_one(self, publication: Publication) -> None:
        await self.publish_many([publication])

    # -- fan-out -----------------------------------------------------------------------

    def _changed(self, channel: str) -> None:
        self.presence_tracker.changed(channel)
        self.presence_tracker.connections_changed()  # a connection's channels changed

    def _on_control(self, message: dict[str, Any]) -> None:
        """Cluster-wide control messages, applied on every node (this one included)."""
        kind = message.get("type")
        if kind == "disconnect_client":
            self._disconnect_here(message)
        elif kind == "webhooks_changed":
            self.webhooks.changed()
        elif kind in ("subscribe_client", "unsubscribe_client"):
            channel = message.get("channel")
            if isinstance(channel, str):
                tenant = message.get("tenant")
                self._target_here(str(message.get("client_id")), channel, kind, tenant)

    def _disconnect_here(self, message: dict[str, Any]) -> None:
        client_id = str(message.get("client_id"))
        reason = str(message.get("reason") or "disconnected")
        tenant = message.get("tenant")
        targets = list(self.clients(client_id, tenant=tenant))
        if message.get("revoke"):
            at = float(message.get("at") or time.time())
            expiries = [c.identity.expires_at for c in targets if c.identity.expires_at]
            # The client of that tenant; for an admin of every tenant, that client id
            # in each tenant it is connected with, and outside any.
            tenants = (
                {tenant} if tenant is not None else {None, *(c.identity.tenant for c in targets)}
            )
            for each in tenants:
                self.revocations.revoke(
                    client_id,
                    tenant=each,
                    token_ids=[c.identity.token_id for c in targets if c.identity.token_id],
                    until=max([at + REVOCATION_TTL, *expiries]),
                    at=at,
                )

        # After the events already received (an event published to the client just
        # before, say): each connection sends what it has queued, then the disconnect.
        def close_all() -> None:
            for connection in targets:
                connection.close(reason)

        self.fanout.when_idle(close_all)

    async def disconnect_client(
        self,
        client_id: str,
        reason: str = "disconnected",
        *,
        revoke: bool = False,
        event: tuple[str, Any] | None = None,
        tenant: str | None = None,
    ) -> Event | None:
        """Close every connection of ``client_id`` on every node with ``reason``.

        With ``event`` (``(type, data)``), that event is published to the client's
        personal channel first, and each connection receives it right before its
        ``disconnect``. With ``revoke``, the client's current tokens are refused until
        they expire (a token issued after this call is accepted again). With ``tenant``,
        only that tenant's client of that id (an admin of one tenant reaches no other).
        """
        published = None
        if event is not None:
            published = await self.publish_to_client(client_id, *event, tenant=tenant)
        message = {
            "type": "disconnect_client",
            "client_id": client_id,
            "tenant": tenant,
            "reason": reason,
            "revoke": revoke,
            "at": time.time(),
        }
        with backend_failure("broker control publish", "the broker cannot be reached"):
            await self.broker.publish_control(message)
        return published

    async def subscribe_client(
        self, client_id: str, channel: str, *, tenant: str | None = None
    ) -> None:
        """Subscribe every connection of ``client_id``, on every node, to ``channel``.

        WebSocket connections get a ``subscribed`` message; SSE streams start carrying
        the channel, and their resume cursor covers it. A connection the client opens
        within ``server_subscription_ttl`` seconds, on any node, joins it as well.
        Connections whose tenant does not hold ``channel`` are left alone.
        """
        await self._publish_targeting("subscribe_client", client_id, channel, tenant)

    async def unsubscribe_client(
        self, client_id: str, channel: str, *, tenant: str | None = None
    ) -> None:
        """Unsubscribe every connection of ``client_id``, on every node, from ``channel``
        (WebSocket connections get ``unsubscribed``) and forget its server-side grant."""
        await self._publish_targeting("unsubscribe_client", client_id, channel, tenant)

    async def _publish_targeting(
        self, kind: str, client_id: str, channel: str, tenant: str | None
    ) -> None:
        validate_channel(channel)
        if tenant is not None and not channel.startswith(f"tenant:{tenant}/"):
            raise Forbidden(f"{channel!r} is outside tenant {tenant!r}")
        message = {"type": kind, "client_id": client_id, "channel": channel, "tenant": tenant}
        with backend_failure("broker control publish", "the broker cannot be reached"):
            await self.broker.publish_control(message)

    def _target_here(
        self, client_id: str, channel: str, kind: str, tenant: str | None = None
    ) -> None:
        grants = self.gate.grants
        # Grants are kept per client of a tenant (its personal channel names it).
        holder = personal_channel(client_id, tenant)
        if kind == "subscribe_client":
            grants.grant(holder, channel, time.monotonic())
        else:
            grants.revoke(holder, channel)
        for connection in list(self.clients(client_id, tenant=tenant)):
            if not connection.identity.tenant_allows(channel):
                continue
            self._targeting.run(self._retarget(connection, channel, kind))

    async def _retarget(self, connection: Connection, channel: str, kind: str) -> None:
        session = connection.session
        if not session.alive:
            return
        if kind == "unsubscribe_client":
            connection.server_channels.discard(channel)
            if channel not in session.subscriptions:
                return
            self.unsubscribe(connection, channel)
        else:
            connection.server_channels.add(channel)
            if channel in session.subscriptions:
                return
            try:
                await self.subscribe(connection, channel)
            except TidingsError as exc:
                log.warning(
                    "server-side subscribe to %r failed: %s",
                    channel,
                    exc.code,
                    extra=connection.log_extra(),
                )
                return
        # An SSE stream has no (un)subscribed message: a position frame tells its client
        # the new cursor, which covers the change from now on.
        session.mark_position()

    async def publish_to_clients(
        self,
        client_ids: Sequence[str],
        type: str = "message",  # noqa: A002 - SPEC's name for the event type
        data: Any = None,
        *,
        tenant: str | None = None,
    ) -> list[Event]:
        """Publish one event to each client's personal channel (every node), in one batch:
        the application resolves "clients in area 7" in its own database."""
        ids = list(dict.fromkeys(client_ids))
        return await self.publish_many(
            [Publication(personal_channel(client_id, tenant), type, data) for client_id in ids]
        )

    async def publish_to_client(
        self,
        client_id: str,
        type: str = "message",  # noqa: A002 - SPEC's name for the event type
        data: Any = None,
        *,
        tenant: str | None = None,
    ) -> Event:
        """Publish to ``client_id``'s personal channel (all its connections, every node);
        with ``tenant``, to that tenant's client of that id."""
        return await self.publish(personal_channel(client_id, tenant), type, data)

    # -- callbacks ------------------------------------------------------------------------

    def set_connect_hook(self, hook: ConnectHook) -> ConnectHook:
        """Use ``hook`` (async ``(identity, request) -> {"channels", "allowed"}``) at connect."""
        self.connect_hook = hook
        return hook

    def on_connect(self, callback: ConnectionCallback) -> ConnectionCallback:
        """Call ``callback(connection)`` after a stream connection opens."""
        self._on_connect.append(callback)
        return callback

    def on_disconnect(self, callback: ConnectionCallback) -> ConnectionCallback:
        """Call ``callback(connection)`` after a stream connection ends."""
        self._on_disconnect.append(callback)
        return callback

    def _notify(self, callbacks: list[ConnectionCallback], connection: Connection) -> None:
        for callback in callbacks:
            try:
                result = callback(connection)
            except Exception:
                log.exception("connection callback failed", extra=connection.log_extra())
                continue
            if result is not None:
                task = asyncio.ensure_future(self._await_callback(result, connection))
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)

    async def _await_callback(self, result: Awaitable[None], connection: Connection) -> None:
        try:
            await result
        except Exception:
            log.exception("connection callback failed", extra=connection.log_extra())

    # -- connections and subscriptions -------------------------------------------------

    def open_connection(
        self,
        *,
        transport: Transport,
        wire: Wire,
        identity: Identity,
        peer: Peer | None,
        on_ready: Callable[[], None],
    ) -> Connection:
        """Register a new connection, or raise when a connection limit is hit.

        ``on_ready`` is called whenever the connection's outbox stops being empty: the
        stream that owns the connection then hands its frames to the transport.
        """
        if self._stopping or not self._started:
            raise Unavailable("the hub is shutting down")
        self.registry.check_room(identity)
        client_id = identity.client_id
        connection = Connection(
            transport=transport,
            wire=wire,
            identity=identity,
            peer=peer,
            max_frames=self.settings.queue_size,
            max_bytes=self.settings.queue_bytes,
            slow_consumer=self.settings.slow_consumer,
            on_ready=on_ready,
        )
        connection.session.open()
        self.registry.add(connection)
        if self.settings.max_connection_age is not None:
            connection.close_at(time.time() + self.settings.max_connection_age, "max_age")
        valid_until = self.gate.authenticator.valid_until(identity)
        if valid_until is not None:
            connection.expire_at(valid_until)
        log.info(
            "connected",
            extra={**connection.log_extra(), "client_id": client_id or "-"},
        )
        self.presence_tracker.connections_changed()
        self._notify(self._on_connect, connection)
        return connection

    def close_connection(self, connection: Connection) -> None:
        """Forget a connection whose transport has ended. Idempotent."""
        if not self.registry.remove(connection):
            return
        session = connection.session
        for channel in list(session.subscriptions):
            self._forget(connection, channel)
        log.info(
            "disconnected",
            extra={**connection.log_extra(), "reason": session.close_reason or "client_gone"},
        )
        connection.release()
        self.presence_tracker.connections_changed()
        self._notify(self._on_disconnect, connection)

    def _forget(self, connection: Connection, channel: str) -> None:
        self.fanout.discard(channel, connection)

    async def subscribe(
        self,
        connection: Connection,
        channel: str,
        *,
        types: frozenset[str] | None = None,
        since: str | None = None,
        request_id: str | int | None = None,
    ) -> None:
        """Subscribe ``connection`` to ``channel``, recovering from ``since`` if given.

        The connection is registered for live events *before* history is read; the
        session buffers those until the history arrives and then drops the overlap, so
        resume has no gap and no duplicate.
        """
        session = connection.session
        if (
            channel not in session.subscriptions
            and len(session.subscriptions) >= self.settings.max_subscriptions
        ):
            raise BadRequest(
                f"a connection may follow at most {self.settings.max_subscriptions} channels",
                code="too_many_subscriptions",
                request_id=request_id,
            )
        session.begin_subscribe(channel, types=types, since=since, request_id=request_id)
        self.fanout.add(channel, connection)
        limit = self.settings.history_size if since is not None else 0
        try:
            with backend_failure("store read", "history cannot be read right now"):
                page = await self.store.read(channel, since=since, limit=limit)
        except Unavailable as exc:
            session.subscriptions.pop(channel, None)
            self._forget(connection, channel)
            exc.request_id = request_id
            raise
        # Release live events held since the registration, then settle the session: it
        # buffered them and now emits history, then those that follow it.
        self.fanout.started(channel, page.position)
        session.finish_subscribe(channel, page)

    def unsubscribe(
        self, connection: Connection, channel: str, *, request_id: str | int | None = None
    ) -> None:
        if not connection.session.unsubscribe(channel, request_id):
            raise NotFound(
                f"not subscribed to {channel!r}", code="not_subscribed", request_id=request_id
            )
        self._forget(connection, channel)

    async def history(
        self, channel: str, *, since: str | None = None, limit: int = 100
    ) -> HistoryPage:
        """Events of ``channel`` after ``since`` (or the newest ``limit``), oldest first."""
        validate_channel(channel)
        with backend_failure("store read", "history cannot be read right now"):
            return await self.store.read(channel, since=since, limit=limit)

    # -- commands -------------------------------------------------------------------------

    def command(self, name: str) -> Callable[[CommandHandler], CommandHandler]:
        """Register an async command handler: ``@hub.command("job.cancel")``."""

        def register(handler: CommandHandler) -> CommandHandler:
            self.commands.register(name, handler)
            return handler

        return register

    def command_handler(self, name: str) -> CommandHandler | None:
        return self.commands.handlers.get(name)

    def claimed_connection(self, identity: Identity, connection_id: str | None) -> str | None:
        """The connection a plain HTTP caller says is its own, refused when it is a
        connection of this node with another client. Another node's connection cannot
        be checked here: the application should trust ``client_id``, not this id."""
        if connection_id is None:
            return None
        connection = self.connections.get(connection_id)
        if connection is None:
            return connection_id
        owner = connection.identity
        # A client is its id within its tenant, and an admin of one tenant administers
        # that tenant's connections only.
        own = (owner.client_id, owner.tenant) == (identity.client_id, identity.tenant)
        administered = identity.admin and identity.tenant in (None, owner.tenant)
        if not (own or administered):
            raise Forbidden("that connection belongs to another client", code="connection_mismatch")
        return connection_id

    async def run_command(self, call: CommandCall) -> Any:
        """Run a client's command (permission, handler or forwarding); see
        :mod:`tidings.commands`."""
        return await self.commands.run(call)

    # -- introspection ---------------------------------------------------------------------

    def channel_stats(self) -> list[dict[str, Any]]:
        """Channels with local subscribers, busiest first."""
        counts = sorted(
            ((channel, len(subs)) for channel, subs in self.fanout.subscribers.items()),
            key=lambda item: (-item[1], item[0]),
        )
        return [{"channel": channel, "subscribers": count} for channel, count in counts]

    async def channels(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Channels with local subscribers or with history, busiest first, then the
        most recently published to: subscribers, retained events, newest event time."""
        with backend_failure("store channels", "history cannot be read right now"):
            stored = {c.channel: c for c in await self.store.channels(limit=limit)}
        subscribed = {c: len(subs) for c, subs in self.fanout.subscribers.items()}
        names = sorted(subscribed.keys() | stored.keys())
        names.sort(key=lambda n: stored[n].last_event_at if n in stored else "", reverse=True)
        names.sort(key=lambda n: subscribed.get(n, 0), reverse=True)
        return [
            {
                "channel": name,
                "subscribers": subscribed.get(name, 0),
                "events": stored[name].events if name in stored else 0,
                "last_event_at": stored[name].last_event_at if name in stored else None,
            }
            for name in names[:limit]
        ]

    async def presence(self, channel: str) -> dict[str, Any]:
        """Connections and distinct client ids following ``channel`` on every node."""
        validate_channel(channel)
        try:
            entry = await self.presence_tracker.get(channel)
        except Exception as exc:
            log.warning("presence read failed: %s", type(exc).__name__)
            raise Unavailable("presence cannot be read right now") from None
        return {
            "channel": channel,
            "connections": entry.connections,
            "clients": list(entry.clients),
        }

    def _listing(self, limit: int) -> list[dict[str, Any]]:
        """At most ``limit`` of this node's connection summaries, each with its ``node``."""
        return [
            {**c.info(), "node": self.node_id}
            for c in itertools.islice(self.connections.values(), limit)
        ]

    async def connection_list(self, *, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every node's connections (of ``tenant`` only, if given): this node's from its
        registry, the others' from the listings they keep in the presence backend (a
        second or so old, at most ``max_listed`` per node); :class:`Unavailable` when
        that backend cannot be read."""
        rows = self._listing(len(self.connections))
        try:
            rows.extend(await self.presence_tracker.other_listings())
        except Exception as exc:
            log.warning("connection listings read failed: %s", type(exc).__name__)
            raise Unavailable("the cluster's connections cannot be read right now") from None
        if tenant is not None:
            rows = [row for row in rows if row.get("tenant") == tenant]
        return rows

    def subscriptions_count(self) -> int:
        return sum(len(subs) for subs in self.fanout.subscribers.values())

    def delivered_total(self) -> int:
        return self.registry.delivered_total()

    def dropped_total(self) -> int:
        return self.registry.dropped_total()

    def connections_by_transport(self) -> dict[str, int]:
        return self.registry.by_transport()

    def clients(self, client_id: str, *, tenant: str | None = None) -> Iterable[Connection]:
        """This node's connections of ``client_id`` (of ``tenant`` only, if given)."""
        found = self.registry.clients(client_id)
        if tenant is None:
            return found
        return [c for c in found if c.identity.tenant == tenant]

    async def ready(self) -> dict[str, Any]:
        """Check the store and broker; raise :class:`Unavailable` naming the one that failed.

        Sources are reported (``consuming``, ``standby``, ``failing``…) but never make the
        hub unready: what they feed waits upstream (an outbox row stays in its table), and
        taking the node out of a load balancer would not bring the source back.
        """
        for name, backend in (("store", self.store), ("broker", self.broker)):
            try:
                await asyncio.wait_for(backend.ping(), timeout=2.0)
            except Exception:
                raise Unavailable(f"the {name} cannot be reached") from None
        checks: dict[str, Any] = {"store": "ok", "broker": "ok"}
        if self.sources:
            checks["sources"] = {source.name: source.status for source in self.sources}
        return checks


def _scheme(url: str) -> str:
    return url.partition("://")[0] or url
