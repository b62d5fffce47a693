"""The webhook endpoints of SPEC §9: register, list, change, delete, deliveries, retry,
test. Admin credentials only; an admin token with a tenant sees its tenant's only."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from tidings.api.docs import ERROR_RESPONSES
from tidings.auth.policy import require_admin
from tidings.core.channels import validate_type
from tidings.core.request import facts_from_scope
from tidings.identity import Identity
from tidings.node import Node

__all__ = ["build_webhook_router"]

_PATTERN = r"^[A-Za-z0-9_\-.:/@=*?\[\]!]{1,200}$"


class WebhookCreate(BaseModel):
    """An endpoint to register."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, examples=["https://app.example.com/hooks/tidings"])
    channels: list[str] = Field(
        default_factory=lambda: ["*"],
        max_length=100,
        description="channel patterns (globs); default every channel",
    )
    types: list[str] = Field(
        default_factory=list, max_length=100, description="event types; default all"
    )
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="`whsec_<base64>`; generated when absent. Shown once, in this answer",
    )
    description: str = Field("", max_length=500)
    enabled: bool = True

    @field_validator("channels")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        import re

        for pattern in value:
            if re.fullmatch(_PATTERN, pattern) is None:
                raise ValueError(f"{pattern[:50]!r} is not a channel pattern")
        return value

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for name in value:
            validate_type(name)
        return value


class WebhookUpdate(WebhookCreate):
    """Changes to an endpoint: only the fields given change."""

    url: str | None = Field(None, max_length=2000)  # type: ignore[assignment]
    rotate_secret: bool = Field(
        False,
        description="sign with a new generated secret from now on (shown once); the old "
        "one keeps signing for `webhook_secret_overlap`",
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    channels: list[str]
    types: list[str]
    enabled: bool
    description: str
    tenant: str | None
    created_at: float
    disabled_reason: str | None
    failing_since: float | None
    last_success_at: float | None
    last_failure_at: float | None
    secret: str | None = Field(None, description="only when it was just set or generated")


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def build_webhook_router(hub: Node) -> APIRouter:
    router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)
    webhooks = hub.webhooks

    async def admin(request: Request) -> Identity:
        identity = hub.gate.identify(facts_from_scope(request.scope))
        require_admin(identity)
        return identity

    @router.post(
        "/api/v1/webhooks",
        status_code=201,
        response_model=WebhookOut,
        summary="Register a webhook endpoint",
    )
    async def create(body: WebhookCreate, who: Identity = Depends(admin)) -> Response:
        endpoint, secret = await webhooks.create(
            body.url,
            channels=body.channels,
            types=body.types,
            secret=body.secret,
            description=body.description,
            enabled=body.enabled,
            tenant=who.tenant,
        )
        return _json({**endpoint.public(), "secret": secret}, 201)

    @router.get("/api/v1/webhooks", summary="Webhook endpoints, with their health")
    async def listing(who: Identity = Depends(admin)) -> Response:
        endpoints = await webhooks.all(tenant=who.tenant)
        return _json({"webhooks": [e.public() for e in endpoints]})

    @router.get(
        "/api/v1/webhooks/{endpoint_id}", response_model=WebhookOut, summary="One webhook endpoint"
    )
    async def one(endpoint_id: str, who: Identity = Depends(admin)) -> Response:
        return _json((await webhooks.get(endpoint_id, tenant=who.tenant)).public())

    @router.patch(
        "/api/v1/webhooks/{endpoint_id}",
        response_model=WebhookOut,
        summary="Change a webhook endpoint (URL, patterns, enabled, secret)",
    )
    async def update(
        endpoint_id: str, body: WebhookUpdate, who: Identity = Depends(admin)
    ) -> Response:
        changes = body.model_dump(exclude_unset=True)
        endpoint, secret = await webhooks.update(endpoint_id, tenant=who.tenant, changes=changes)
        return _json({**endpoint.public(), "secret": secret})

    @router.delete(
        "/api/v1/webhooks/{endpoint_id}",
        status_code=204,
        summary="Delete a webhook endpoint and its pending deliveries",
    )
    async def delete(endpoint_id: str, who: Identity = Depends(admin)) -> Response:
        await webhooks.delete(endpoint_id, tenant=who.tenant)
        return Response(status_code=204)

    @router.get(
        "/api/v1/webhooks/{endpoint_id}/deliveries",
        summary="Recent deliveries, newest first: status, attempts, last answer",
    )
    async def deliveries(
        endpoint_id: str,
        limit: int = Query(100, ge=1, le=1000),
        who: Identity = Depends(admin),
    ) -> Response:
        found = await webhooks.deliveries(endpoint_id, tenant=who.tenant, limit=limit)
        return _json({"deliveries": [d.public() for d in found]})

    @router.post(
        "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry",
        status_code=202,
        summary="Send a delivery again now (same webhook-id)",
    )
    async def retry(endpoint_id: str, delivery_id: str, who: Identity = Depends(admin)) -> Response:
        delivery = await webhooks.retry(endpoint_id, delivery_id, tenant=who.tenant)
        return _json(delivery.public(), 202)

    @router.post(
        "/api/v1/webhooks/{endpoint_id}/test",
        status_code=202,
        summary="Send this endpoint a `webhook.test` event",
    )
    async def test(endpoint_id: str, who: Identity = Depends(admin)) -> Response:
        delivery = await webhooks.send_test(endpoint_id, tenant=who.tenant)
        return _json(delivery.public(), 202)

    return router
