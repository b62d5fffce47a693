"""The access rules, written once and applied by every transport and endpoint."""

from __future__ import annotations

from collections.abc import Iterable

from tidings.errors import Forbidden, LimitExceeded
from tidings.identity import Identity
from tidings.ratelimit import Limiter

__all__ = [
    "authorize_command",
    "authorize_publish",
    "authorize_subscribe",
    "publish_rate_key",
    "require_admin",
]


async def authorize_publish(
    identity: Identity,
    channels: Iterable[str],
    *,
    limiter: Limiter,
    rate_key: str,
    request_id: str | int | None = None,
) -> None:
    """Refuse a publish the identity may not make, or one over its rate."""
    for channel in channels:
        if not identity.may_publish(channel):
            raise Forbidden(f"not allowed to publish to {channel!r}", request_id=request_id)
    wait = await limiter.acquire(publish_rate_key(identity, rate_key))
    if wait is not None:
        raise LimitExceeded(
            "too many publishes; slow down",
            code="rate_limited",
            retry_after=wait,
            request_id=request_id,
        )


def publish_rate_key(identity: Identity, fallback: str) -> str:
    """Whose bucket a publish takes from: the client's, within its tenant (the same
    ``sub`` in two tenants is two clients), else ``fallback``'s (the caller's address).
    The prefixes keep a client named like an address apart from that address."""
    if identity.client_id is None:
        return f"ip:{fallback}"
    return f"client:{identity.tenant or ''}/{identity.client_id}"


def authorize_subscribe(
    identity: Identity, channels: Iterable[str], *, request_id: str | int | None = None
) -> None:
    """Refuse following (or reading the history of) a channel the identity may not read."""
    for channel in channels:
        if not identity.may_subscribe(channel):
            raise Forbidden(f"not allowed to subscribe to {channel!r}", request_id=request_id)


def authorize_command(
    identity: Identity, name: str, *, request_id: str | int | None = None
) -> None:
    """Refuse a command the identity's ``commands`` patterns do not list."""
    if not identity.may_command(name):
        raise Forbidden(
            f"not allowed to run the command {name[:100]!r} "
            "(the token's 'commands' claim does not list it)",
            request_id=request_id,
        )


def require_admin(identity: Identity) -> None:
    if not identity.admin:
        raise Forbidden("this API needs an admin token or an API key", code="admin_required")
