"""The connect hook (SPEC §6): the application decides a connection's channels.

A hook receives who is connecting and answers which channels the connection is
subscribed to now and which it may subscribe to later, e.g. "the groups this
supervisor may see". It is a Python callable or an HTTP URL. A hook that fails, times
out or answers something unreadable refuses the connection: an error is never read
as permission.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tidings.core.channels import validate_channel
from tidings.errors import BadRequest, Forbidden, TidingsError, Unavailable
from tidings.identity import Identity

__all__ = ["ConnectDecision", "ConnectHook", "HttpConnectHook", "decide"]

log = logging.getLogger("tidings.hooks")


@dataclass(frozen=True, slots=True)
class ConnectDecision:
    """What a hook answered. ``allowed=None`` keeps the identity's own patterns."""

    subscribe: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None


ConnectHook = Callable[[Identity, Mapping[str, Any]], Awaitable[Any]]


def _decision(raw: Any) -> ConnectDecision:
    if isinstance(raw, ConnectDecision):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError("the hook must answer a JSON object")
    if raw.get("allow") is False:
        raise Forbidden(
            str(raw.get("reason") or "the connect hook refused this connection"),
            code="connect_refused",
        )
    subscribe = raw.get("channels", [])
    allowed = raw.get("allowed")
    if not isinstance(subscribe, list) or not all(isinstance(c, str) for c in subscribe):
        raise ValueError("'channels' must be a list of channel names")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(p, str) for p in allowed)
    ):
        raise ValueError("'allowed' must be a list of channel patterns")
    for channel in subscribe:
        validate_channel(channel)
    return ConnectDecision(tuple(subscribe), tuple(allowed) if allowed is not None else None)


async def decide(
    hook: ConnectHook, identity: Identity, request: Mapping[str, Any], *, wait: float
) -> ConnectDecision:
    """Run ``hook`` for up to ``wait`` seconds; refuse the connection on any failure."""
    timeout = wait
    try:
        async with asyncio.timeout(wait):
            raw = await hook(identity, request)
        return _decision(raw)
    except Forbidden:
        raise
    except TimeoutError:
        log.warning("connect hook timed out after %.1fs", timeout)
        raise Unavailable(
            "the connect hook did not answer in time", code="connect_hook_failed", retry_after=5
        ) from None
    except (TidingsError, BadRequest, ValueError) as exc:
        log.warning("connect hook answered garbage: %s", exc)
        raise Unavailable(
            "the connect hook's answer was not usable", code="connect_hook_failed", retry_after=5
        ) from None
    except Exception as exc:
        log.warning("connect hook failed: %s", type(exc).__name__)
        raise Unavailable(
            "the connect hook failed", code="connect_hook_failed", retry_after=5
        ) from None


class HttpConnectHook:
    """POSTs ``{client_id, tenant, claims, transport, channels}`` to a URL; reads
    ``{"channels": [...], "allowed": [...]?, "allow": false?}`` back."""

    def __init__(self, url: str, *, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self._client = client
        self._owns_client = client is None

    async def __call__(self, identity: Identity, request: Mapping[str, Any]) -> Any:
        payload = {
            "client_id": identity.client_id,
            "tenant": identity.tenant,
            "claims": dict(identity.claims),
            **request,
        }
        if self._client is None:
            self._client = httpx.AsyncClient()
        response = await self._client.post(self.url, json=payload)
        if response.status_code == 403:
            return {"allow": False, "reason": "the connect hook refused this connection"}
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        """Close the hook's own HTTP client (the hub stops); a later call opens a new one."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
