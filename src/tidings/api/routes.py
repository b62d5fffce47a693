"""The JSON endpoints of SPEC §3."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from tidings.api.asyncapi import asyncapi_document
from tidings.api.docs import CHANNEL_PATTERN, ERROR_RESPONSES
from tidings.api.models import (
    ChannelList,
    ClientChannelRequest,
    ClientEventRequest,
    ClientsEventRequest,
    CommandRequest,
    CommandResult,
    ConnectionList,
    DisconnectRequest,
    EventsOut,
    EventTypesOut,
    HistoryOut,
    PresenceOut,
    ScheduledList,
)
from tidings.api.publish import publish_json, read_json, validation_error
from tidings.auth.policy import authorize_subscribe, require_admin
from tidings.commands import CommandCall
from tidings.core.channels import validate_channel
from tidings.core.request import client_ip, facts_from_scope
from tidings.errors import Forbidden, NotFound
from tidings.identity import Identity
from tidings.metrics import CONTENT_TYPE, make_registry, render_metrics
from tidings.node import Node

__all__ = ["build_router", "read_json_body"]


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


async def read_json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, refusing wrong content types and bodies over ``limit``."""
    return await read_json(request.scope, request.receive, limit)


_PUBLISH_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/PublishRequest"},
                    {"$ref": "#/components/schemas/BatchPublishRequest"},
                ]
            },
            "examples": {
                "one": {
                    "value": {"channel": "alerts", "type": "disk_full", "data": {"host": "db1"}}
                },
                "batch": {
                    "value": {
                        "events": [
                            {"channel": "alerts", "data": 1},
                            {"channel": "alerts", "data": 2},
                        ]
                    }
                },
            },
        }
    },
}


_COMMAND_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/CommandRequest"},
            "example": {"name": "job.cancel", "args": {"job_id": "j1"}},
        }
    },
}


def build_router(hub: Node) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    registry = make_registry(hub)
    settings = hub.settings

    async def caller(request: Request) -> Identity:
        """The identity behind the request's credential (401 when required and absent)."""
        return hub.gate.identify(facts_from_scope(request.scope))

    async def admin(identity: Identity = Depends(caller)) -> Identity:
        require_admin(identity)
        return identity

    def rate_key(request: Request) -> str:
        client = request.client
        return client_ip((client.host, client.port) if client else None)

    @router.post(
        "/api/v1/publish",
        status_code=201,
        tags=["publish"],
        summary="Publish one event or a batch",
        openapi_extra={"requestBody": _PUBLISH_BODY},
        responses={
            201: {"description": 'the stored event, or `{"events": [...]}` for a batch'},
            202: {
                "description": 'scheduled (`at`, `delay_s` or `key`): `{"scheduled": {"key", '
                '"channel", "type", "at"}}`; for a batch `{"events": [...], "scheduled": [...]}`'
            },
            429: {"description": "too many scheduled events pending (`max_scheduled`)"},
            400: {
                "description": (
                    "invalid JSON, channel, type or fields; `invalid_event` with `errors` "
                    "(`[{path, message}]`, see FieldErrorOut) when a registered type's data "
                    "does not match its schema; `unknown_event_type` under `--strict-types`"
                )
            },
            413: {"description": "body, event or batch over its limit"},
            415: {"description": "the body is not JSON"},
            503: {"description": "store or broker unreachable: nothing was published"},
        },
    )
    async def publish(
        request: Request,
        identity: Identity = Depends(caller),
        idempotency_key: str | None = Header(
            None,
            alias="Idempotency-Key",
            description=(
                "publish at most once: a repeat within the store's window (300 s) answers "
                "201 with the event first stored. Same as the body's `idempotency_key` "
                "(both given and different: 400); a batch's item i is stored under "
                "`<key>:<i>` (its items then take no key and no schedule)"
            ),
        ),
    ) -> Response:
        # Served by PublishEndpoint, routed ahead of this; kept for the OpenAPI document
        # and for an app that includes this router alone.
        body = await read_json_body(request, settings.max_body_size)
        status, answer = await publish_json(hub, identity, body, rate_key(request), idempotency_key)
        return _json(answer, status)

    @router.get(
        "/api/v1/scheduled",
        response_model=ScheduledList,
        tags=["publish"],
        summary="Pending scheduled events, soonest first",
        responses={403: {"description": "not an admin, and no publish right on `channel`"}},
    )
    async def scheduled(
        channel: str | None = Query(
            None,
            description="only those of this channel",
            json_schema_extra={"pattern": CHANNEL_PATTERN},
        ),
        limit: int = Query(1000, ge=1, le=10_000),
        identity: Identity = Depends(caller),
    ) -> Response:
        # An admin sees every schedule; a publisher those of a channel it may publish to.
        if channel is None:
            require_admin(identity)
        elif not identity.may_publish(validate_channel(channel)):
            raise Forbidden(f"not allowed to publish to {channel!r}")
        entries = await hub.scheduled(channel=channel, limit=limit)
        if identity.tenant is not None:  # an admin of one tenant sees that tenant's
            entries = [e for e in entries if identity.tenant_allows(e.channel)]
        return _json({"scheduled": [entry.to_dict() for entry in entries]})

    @router.delete(
        "/api/v1/scheduled/{key:path}",
        status_code=204,
        tags=["publish"],
        summary="Cancel a scheduled event",
        responses={404: {"description": "nothing is pending under this key"}},
    )
    async def cancel_scheduled(key: str, identity: Identity = Depends(caller)) -> Response:
        pending = await hub.get_scheduled(key)
        # Another tenant's schedule is not there for this caller: a refusal would name
        # that tenant's channel.
        if pending is None or not identity.tenant_allows(pending.channel):
            raise NotFound(f"nothing is scheduled under {key[:200]!r}", code="not_scheduled")
        if not identity.may_publish(pending.channel):
            raise Forbidden(f"not allowed to publish to {pending.channel!r}")
        if not await hub.cancel_scheduled(key):
            raise NotFound(f"nothing is scheduled under {key[:200]!r}", code="not_scheduled")
        return Response(status_code=204)

    @router.post(
        "/api/v1/commands",
        response_model=CommandResult,
        tags=["commands"],
        summary="Run a command of the application (for SSE and plain HTTP clients)",
        openapi_extra={"requestBody": _COMMAND_BODY},
        responses={
            400: {"description": "invalid JSON or fields"},
            403: {"description": "the token's `commands` claim does not list this command"},
            404: {"description": "`unknown_command`: no handler and no command URL"},
            502: {"description": "`command_failed`: the handler or the application failed"},
            503: {"description": "`command_unavailable`: the command URL cannot be reached"},
            504: {"description": "`command_timeout`: the application did not answer in time"},
        },
    )
    async def command(request: Request, identity: Identity = Depends(caller)) -> Response:
        body = await read_json_body(request, settings.max_body_size)
        try:
            asked = CommandRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        call = CommandCall(
            asked.name,
            identity,
            asked.args,
            connection_id=hub.claimed_connection(identity, asked.connection_id),
            request_id=request.headers.get("x-request-id", "")[:200] or None,
        )
        return _json({"result": await hub.run_command(call)})

    @router.get(
        "/api/v1/channels/{channel:path}/history",
        response_model=HistoryOut,
        tags=["history"],
        summary="Backfill: events after `since`, or the newest `limit`",
    )
    async def history(
        channel: str = Path(json_schema_extra={"pattern": CHANNEL_PATTERN}),
        since: str | None = Query(None, description="an event id; events after it"),
        limit: int = Query(100, ge=1, le=10_000),
        identity: Identity = Depends(caller),
    ) -> Response:
        authorize_subscribe(identity, [channel])
        page = await hub.history(channel, since=since, limit=limit)
        return _json(
            {
                "events": [event.to_dict() for event in page.events],
                "complete": page.complete,
                "position": str(page.position),
            }
        )

    @router.get(
        "/api/v1/channels/{channel:path}/presence",
        response_model=PresenceOut,
        tags=["admin"],
        summary="Connections and distinct client ids subscribed to a channel",
    )
    async def presence(
        channel: str = Path(json_schema_extra={"pattern": CHANNEL_PATTERN}),
        who: Identity = Depends(admin),
    ) -> Response:
        # An admin of one tenant administers that tenant only: another tenant's presence
        # would name its clients.
        if not who.tenant_allows(channel):
            raise Forbidden(f"{channel[:200]!r} is not a channel of tenant {who.tenant!r}")
        return _json(await hub.presence(channel))

    @router.get(
        "/api/v1/channels",
        response_model=ChannelList,
        tags=["admin"],
        summary="Channels with subscribers or history",
    )
    async def channels(
        limit: int = Query(1000, ge=1, le=10_000), who: Identity = Depends(admin)
    ) -> Response:
        found = await hub.channels(limit=limit)
        if who.tenant is not None:  # an admin of one tenant sees that tenant's
            found = [c for c in found if who.tenant_allows(c["channel"])]
        return _json({"channels": found})

    @router.get(
        "/api/v1/connections",
        response_model=ConnectionList,
        tags=["admin"],
        summary="Live connections",
    )
    async def connections(who: Identity = Depends(admin)) -> Response:
        # An admin of one tenant sees that tenant's, on every node.
        return _json({"connections": await hub.connection_list(tenant=who.tenant)})

    @router.post(
        "/api/v1/clients/{client_id}/events",
        status_code=201,
        tags=["clients"],
        summary="Publish to one client's personal channel (all its connections)",
    )
    async def client_event(
        client_id: str, body: ClientEventRequest, who: Identity = Depends(admin)
    ) -> Response:
        event = await hub.publish_to_client(client_id, body.type, body.data, tenant=who.tenant)
        return _json(event.to_dict(), 201)

    @router.post(
        "/api/v1/clients/events",
        status_code=201,
        tags=["clients"],
        summary="Publish one event to each listed client's personal channel",
    )
    async def clients_event(body: ClientsEventRequest, who: Identity = Depends(admin)) -> Response:
        events = await hub.publish_to_clients(
            body.client_ids, body.type, body.data, tenant=who.tenant
        )
        return _json({"events": [event.to_dict() for event in events]}, 201)

    @router.post(
        "/api/v1/clients/{client_id}/disconnect",
        status_code=202,
        tags=["clients"],
        summary="Disconnect every connection of a client, on every node; optionally revoke",
    )
    async def client_disconnect(
        client_id: str, body: DisconnectRequest, who: Identity = Depends(admin)
    ) -> Response:
        event = (body.event.type, body.event.data) if body.event is not None else None
        published = await hub.disconnect_client(
            client_id, body.reason, revoke=body.revoke, event=event, tenant=who.tenant
        )
        answer: dict[str, Any] = {"client_id": client_id, "reason": body.reason}
        answer["revoke"] = body.revoke
        if published is not None:
            answer["event"] = published.to_dict()
        return _json(answer, 202)

    @router.post(
        "/api/v1/clients/{client_id}/subscribe",
        status_code=202,
        tags=["clients"],
        summary="Subscribe every connection of a client, on every node, to a channel",
    )
    async def client_subscribe(
        client_id: str, body: ClientChannelRequest, who: Identity = Depends(admin)
    ) -> Response:
        await hub.subscribe_client(client_id, body.channel, tenant=who.tenant)
        return _json({"client_id": client_id, "channel": body.channel, "subscribed": True}, 202)

    @router.post(
        "/api/v1/clients/{client_id}/unsubscribe",
        status_code=202,
        tags=["clients"],
        summary="Unsubscribe every connection of a client, on every node, from a channel",
    )
    async def client_unsubscribe(
        client_id: str, body: ClientChannelRequest, who: Identity = Depends(admin)
    ) -> Response:
        await hub.unsubscribe_client(client_id, body.channel, tenant=who.tenant)
        return _json({"client_id": client_id, "channel": body.channel, "subscribed": False}, 202)

    @router.get(
        "/api/v1/event-types",
        response_model=EventTypesOut,
        tags=["typed events"],
        summary="Registered event types: their channel patterns and data schemas",
        description=(
            "Open, like `/openapi.json` and `/asyncapi.json`: the schemas say what data a "
            "type must carry, nothing more. `strict`: unregistered types are refused."
        ),
    )
    async def event_types() -> Response:
        types = hub.event_types
        return _json({"types": [t.describe() for t in types], "strict": types.strict})

    @router.get(
        "/asyncapi.json",
        tags=["typed events"],
        summary="AsyncAPI 3.0.0 document of the hub's streams, channels and event types",
    )
    async def asyncapi(request: Request) -> Response:
        # Mounted in an application (`app.mount("/realtime", …)`), the streams are under
        # the mount's path: the document says where clients really connect.
        document = asyncapi_document(
            settings,
            hub.event_types,
            host=request.headers.get("host"),
            root_path=request.scope.get("root_path", ""),
        )
        return _json(document)

    @router.get("/health", tags=["operations"], summary="Liveness")
    async def health() -> Response:
        return _json({"status": "ok"})

    @router.get(
        "/ready",
        tags=["operations"],
        summary="Readiness: store and broker reachable",
        responses={503: {"description": "a backend is unreachable"}},
    )
    async def ready() -> Response:
        checks = await hub.ready()
        return _json({"status": "ready", **checks})

    @router.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "the text exposition format",
                "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        return Response(render_metrics(hub, registry), media_type=CONTENT_TYPE)

    _ = EventsOut  # documented through openapi_extra; keep the schema in components
    return router
