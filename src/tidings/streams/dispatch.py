"""What the hub does with each parsed WebSocket client message (SPEC §5).

Replies are queued on the connection's session like any other frame, so they keep
their order relative to events and obey the same bounds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from tidings.auth.policy import authorize_publish, authorize_subscribe
from tidings.commands import CommandCall
from tidings.connection import Connection
from tidings.core import protocol
from tidings.core.events import format_timestamp
from tidings.core.request import client_ip
from tidings.core.scheduled import validate_key
from tidings.errors import BadRequest, Forbidden, TidingsError, Unauthorized
from tidings.node import Node

__all__ = ["dispatch", "error_frame"]


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


def error_frame(exc: TidingsError) -> str:
    return protocol.encode(
        protocol.error_message(exc.code, exc.message, exc.request_id, **exc.details())
    )


def _reply(connection: Connection, message: dict[str, object]) -> None:
    connection.session.push_control(protocol.encode(message))


async def dispatch(hub: Node, connection: Connection, message: protocol.ClientMessage) -> None:
    """Carry out one client message; raise :class:`TidingsError` for the client's mistakes."""
    identity = connection.identity
    match message:
        case protocol.Subscribe(channel, since, types, rid):
            authorize_subscribe(identity, [channel], request_id=rid)
            await hub.subscribe(connection, channel, types=types, since=since, request_id=rid)
        case protocol.Unsubscribe(channel, rid):
            hub.unsubscribe(connection, channel, request_id=rid)
        case protocol.Publish(channel, event_type, data, rid) as publish:
            await authorize_publish(
                identity,
                [channel],
                limiter=hub.publish_limiter,
                rate_key=client_ip(connection.peer),
                request_id=rid,
            )
            if publish.scheduled:
                try:
                    if publish.key is not None:
                        pending = await hub.get_scheduled(validate_key(publish.key))
                        if pending is not None and not identity.may_publish(pending.channel):
                            raise Forbidden(
                                f"the key {publish.key!r} is scheduled on a channel "
                                "you may not publish to"
                            )
                    entry = await hub.schedule(
                        channel,
                        event_type,
                        data,
                        at=publish.at,
                        delay=publish.delay_s,
                        key=publish.key,
                    )
                except TidingsError as exc:
                    exc.request_id = rid
                    raise
                _reply(connection, protocol.scheduled_message(entry.summary(), rid))
                return
            try:
                event = await hub.publish(channel, event_type, data)
            except TidingsError as exc:
                exc.request_id = rid
                raise
            _reply(connection, protocol.published_message(event.to_dict(), rid))
        case protocol.Ping(rid):
            _reply(connection, protocol.pong_message(_now(), rid))
        case protocol.Pong():
            pass  # any message counts as a sign of life; the transport noted it
        case protocol.Refresh(token, rid):
            _refresh(hub, connection, token, rid)
        case protocol.Command(name, args, rid):
            call = CommandCall(name, identity, args, connection.id, rid)
            _reply(connection, protocol.result_message(await hub.run_command(call), rid))


def _refresh(hub: Node, connection: Connection, token: str, rid: protocol.RequestId) -> None:
    """Replace the connection's credential with a newer token of the same client."""
    if hub.authenticator.verifier is None:
        raise BadRequest(
            "this hub has no token verification configured", code="auth_disabled", request_id=rid
        )
    try:
        identity = hub.authenticator.authenticate(token)
    except TidingsError as exc:
        exc.request_id = rid
        raise
    # A client is its id within its tenant: two tenants' "bob" are two clients, and a
    # connection never changes tenant (its personal channel and admin scope are its).
    held = connection.identity
    if (identity.client_id, identity.tenant) != (held.client_id, held.tenant):
        raise Forbidden(
            "a refresh token must be for the same client", code="client_mismatch", request_id=rid
        )
    if hub.connect_hook is not None:
        # Channel rights decided by the connect hook hold for the connection's lifetime.
        identity = replace(identity, subscribe=connection.identity.subscribe)
    expires_at = identity.expires_at
    if expires_at is None:  # pragma: no cover - exp is required by the verifier
        raise Unauthorized("the token has no expiry", code="invalid_token", request_id=rid)
    connection.identity = identity
    connection.expire_at(hub.authenticator.valid_until(identity) or expires_at)
    # Channels the new token no longer allows are left, with the usual reply.
    for channel in list(connection.session.subscriptions):
        if not identity.may_subscribe(channel) and channel not in connection.server_channels:
            hub.unsubscribe(connection, channel)
    _reply(connection, {"type": "refreshed", "expires_at": identity.expires_at, "id": rid})
