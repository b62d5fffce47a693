"""``POST /api/v1/publish``: the one API endpoint on the hot path, kept off FastAPI's.

The FastAPI route documents the endpoint; requests are served by :class:`PublishEndpoint`,
a raw ASGI app routed ahead of it, which reads and answers the body itself instead of
going through dependency solving and response classes. Both run :func:`publish_json`.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from tidings.api.models import BatchPublishRequest, PublishRequest
from tidings.auth.policy import authorize_publish
from tidings.core.request import client_ip, facts_from_scope, header
from tidings.core.scheduled import Scheduled, validate_key
from tidings.errors import BadRequest, Forbidden, InvalidJSON, TooLarge, UnsupportedMediaType
from tidings.identity import Identity
from tidings.node import Node, Publication

__all__ = [
    "MAX_HEADER_KEY",
    "PublishEndpoint",
    "header_key",
    "publish_json",
    "read_json",
    "validation_error",
]

_JSON_HEADERS = [(b"content-type", b"application/json")]


async def read_json(scope: Scope, receive: Receive, limit: int) -> Any:
    """The request's JSON body, refusing wrong content types and bodies over ``limit``."""
    headers = scope.get("headers", ())
    media = (header(headers, b"content-type") or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json "
            f"(got {media[:60] or 'none'!r})"
        )
    declared = header(headers, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is over the limit of {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: what came is all there is
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes", code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        return orjson.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"the body is not valid JSON: {exc.msg} at {exc.pos}") from None


def validation_error(exc: ValidationError) -> BadRequest:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return BadRequest(f"{where}: {first['msg']}", code="invalid_request")


#: An ``Idempotency-Key`` header leaves room for the ``:<index>`` a batch item gets.
MAX_HEADER_KEY = 190


def header_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header's key, or ``None`` without one."""
    if value is None:
        return None
    key = value.strip()
    if not 1 <= len(key) <= MAX_HEADER_KEY:
        raise BadRequest(
            f"the Idempotency-Key header must be 1-{MAX_HEADER_KEY} characters",
            code="invalid_idempotency_key",
        )
    return key


async def publish_json(
    hub: Node, identity: Identity, body: Any, rate_key: str, idempotency_key: str | None = None
) -> tuple[int, Any]:
    """Publish (or schedule) what a request body asks for: the response's status and
    body. 201 with the stored event(s); 202 when anything was scheduled.

    ``idempotency_key`` is the ``Idempotency-Key`` header's: for one event it is the
    event's key (the body's, if also given, must be the same); a batch's item ``i`` gets
    ``<key>:<i>``, so a batch sent again is stored once, and its items may then carry no
    key of their own and must not be scheduled.
    """
    settings = hub.settings
    idempotency_key = header_key(idempotency_key)
    if isinstance(body, dict) and "events" in body:
        events = body.get("events")
        if isinstance(events, list) and len(events) > settings.max_batch_size:
            raise TooLarge(
                f"a batch holds at most {settings.max_batch_size} events (got {len(events)})",
                code="batch_too_large",
            )
        try:
            batch = BatchPublishRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        await authorize_publish(
            identity,
            {e.channel for e in batch.events},
            limiter=hub.publish_limiter,
            rate_key=rate_key,
        )
        _key_needs_time(batch.events)
        keys = [e.idempotency_key for e in batch.events]
        if idempotency_key is not None:
            if any(e.idempotency_key is not None or e.scheduled for e in batch.events):
                raise BadRequest(
                    "with an Idempotency-Key header, batch items take no idempotency_key "
                    "and no schedule: item i is stored under <key>:<i>",
                    code="invalid_idempotency_key",
                )
            keys = [f"{idempotency_key}:{i}" for i in range(len(batch.events))]
        later = [e for e in batch.events if e.scheduled]
        if later:
            await _may_replace(hub, identity, later)
            # Every scheduled item is checked as a publish before anything happens.
            hub.check([Publication(item.channel, item.type, item.data) for item in later])
        stored = await hub.publish_many(
            [
                Publication(e.channel, e.type, e.data, key)
                for e, key in zip(batch.events, keys, strict=True)
                if not e.scheduled
            ]
        )
        answer: dict[str, Any] = {"events": [event.to_dict() for event in stored]}
        if not later:
            return 201, answer
        answer["scheduled"] = [(await _schedule(hub, item)).summary() for item in later]
        return 202, answer
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_request")
    try:
        one = PublishRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if idempotency_key is not None:
        if one.idempotency_key not in (None, idempotency_key):
            raise BadRequest(
                "the Idempotency-Key header and the body's idempotency_key differ",
                code="invalid_idempotency_key",
            )
        one = one.model_copy(update={"idempotency_key": idempotency_key})
    await authorize_publish(identity, [one.channel], limiter=hub.publish_limiter, rate_key=rate_key)
    _key_needs_time([one])
    if one.scheduled:
        await _may_replace(hub, identity, [one])
        return 202, {"scheduled": (await _schedule(hub, one)).summary()}
    event = await hub.publish(one.channel, one.type, one.data, idempotency_key=one.idempotency_key)
    return 201, event.to_dict()


def _key_needs_time(items: list[PublishRequest]) -> None:
    for item in items:
        if item.key is not None and not item.scheduled:
            raise BadRequest(
                "key names a scheduled event: give at or delay_s with it", code="invalid_schedule"
            )


async def _schedule(hub: Node, item: PublishRequest) -> Scheduled:
    if item.idempotency_key is not None:
        raise BadRequest(
            "a scheduled event takes a key, not an idempotency_key", code="invalid_schedule"
        )
    return await hub.schedule(
        item.channel, item.type, item.data, at=item.at, delay=item.delay_s, key=item.key
    )


async def _may_replace(hub: Node, identity: Identity, items: list[PublishRequest]) -> None:
    """Refuse to replace a pending schedule on a channel the caller may not publish to:
    keys are one namespace, channels are what rights are given on."""
    for item in items:
        if item.key is None:
            continue
        pending = await hub.get_scheduled(validate_key(item.key))
        if pending is not None and not identity.may_publish(pending.channel):
            raise Forbidden(
                f"the key {item.key!r} is scheduled on a channel you may not publish to"
            )


class PublishEndpoint:
    """``POST /api/v1/publish`` as a raw ASGI app; errors are raised to the app's
    handlers, which answer them with the JSON bodies of SPEC §3."""

    def __init__(self, hub: Node) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        facts = facts_from_scope(scope)
        identity = hub.gate.identify(facts)
        body = await read_json(scope, receive, hub.settings.max_body_size)
        status, answer = await publish_json(
            hub,
            identity,
            body,
            client_ip(facts.peer),
            header(scope.get("headers", ()), b"idempotency-key"),
        )
        content = orjson.dumps(answer)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", b"%d" % len(content))],
            }
        )
        await send({"type": "http.response.body", "body": content})
