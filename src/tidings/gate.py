"""The admission gate: who may open a stream, as whom, on which channels.

One object per hub holds what admission needs: the connection rate limiter (shared by
every node when the backends are Redis, see :func:`tidings.backends.limiter_for`), the
authenticator (with its revocations), the connect hook and the access policy. Both
stream paths call :meth:`Gate.admit` with the facts of a request; nothing here knows a
transport. What must never happen: a stream that follows a channel its identity may not
read, or a refusal that does not say which rule refused it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from tidings.auth.authenticator import Authenticator, credential_from
from tidings.auth.policy import authorize_subscribe
from tidings.auth.revocation import Revocations
from tidings.backends import limiter_for
from tidings.core.channels import personal_channel
from tidings.core.request import RequestFacts, client_ip
from tidings.errors import BadRequest, LimitExceeded
from tidings.hooks import ConnectHook, HttpConnectHook, decide
from tidings.identity import Identity
from tidings.ratelimit import Limiter
from tidings.settings import Settings
from tidings.targeting import AutoChannels, Grants

__all__ = ["Admission", "Gate"]


@dataclass(frozen=True, slots=True)
class Admission:
    """Who may open the stream, and the channels it follows from the start."""

    identity: Identity
    channels: tuple[str, ...]
    #: Those of ``channels`` the server chose (automatic, server-side subscriptions):
    #: held whatever the client's own rights say.
    server_channels: frozenset[str] = field(default_factory=frozenset)


class Gate:
    """Rate limits, credentials, the connect hook and the channel rights of one hub."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.revocations = Revocations()
        self.authenticator = Authenticator(settings, self.revocations)
        shared = (settings.broker, settings.store)
        self.connection_limiter: Limiter = limiter_for(
            shared, settings.connection_rate, 60.0, name="connections"
        )
        self.publish_limiter: Limiter = limiter_for(
            shared, settings.publish_rate, 1.0, name="publishes"
        )
        self.connect_hook: ConnectHook | None = (
            HttpConnectHook(settings.connect_hook) if settings.connect_hook else None
        )
        self.auto_channels = AutoChannels(settings.auto_channels)
        #: Server-side subscriptions by client, recorded on every node.
        self.grants = Grants(
            ttl=settings.server_subscription_ttl, per_client=settings.max_subscriptions
        )

    def identify(self, facts: RequestFacts) -> Identity:
        """The identity of a request's credential (``?token=``, bearer, cookie)."""
        return self.authenticator.authenticate(credential_from(facts.query_string, facts.headers))

    async def admit(
        self, facts: RequestFacts, channels: Iterable[str], transport: str
    ) -> Admission:
        """Decide whether a stream may open, as whom, and on which channels.

        In order: the connection rate per IP, the credential, the connect hook, then the
        right to every requested channel. The personal channel of an identified client
        is always added, and so are the channels the server chose for it (automatic
        channels and server-side subscriptions, see :mod:`tidings.targeting`).
        """
        limiter = self.connection_limiter
        wait = await limiter.acquire(client_ip(facts.peer)) if limiter.rate > 0 else None
        if wait is not None:
            raise LimitExceeded(
                "too many new connections from this address (the connection_rate setting)",
                code="rate_limited",
                retry_after=wait,
            )
        identity = self.identify(facts)
        requested = list(channels)
        chosen = list(requested)
        hook = self.connect_hook
        if hook is not None:
            decision = await decide(
                hook,
                identity,
                {"transport": transport, "channels": requested},
                wait=self.settings.connect_hook_timeout,
            )
            allowed = decision.allowed if decision.allowed is not None else identity.subscribe
            if allowed is not None:
                identity = replace(identity, subscribe=(*allowed, *decision.subscribe))
            chosen.extend(decision.subscribe)
        if identity.client_id is not None and identity.claims:
            chosen.append(personal_channel(identity.client_id, identity.tenant))
        authorize_subscribe(identity, dict.fromkeys(chosen))
        server = self.server_channels(identity)
        unique = tuple(dict.fromkeys([*chosen, *server]))
        if len(unique) > self.settings.max_subscriptions:
            raise BadRequest(
                f"a stream may follow at most {self.settings.max_subscriptions} channels",
                code="too_many_subscriptions",
            )
        return Admission(identity, unique, frozenset(server))

    def server_channels(self, identity: Identity) -> list[str]:
        """The channels the server chose for ``identity``: automatic ones from its
        claims, then those it was subscribed to server-side (within its tenant)."""
        chosen = self.auto_channels.channels(identity)
        holder = (
            personal_channel(identity.client_id, identity.tenant)
            if identity.client_id is not None
            else None
        )
        granted = self.grants.channels(holder, time.monotonic())
        chosen.extend(c for c in granted if identity.tenant_allows(c))
        return chosen

    async def aclose(self) -> None:
        await self.connection_limiter.close()
        await self.publish_limiter.close()
        if isinstance(self.connect_hook, HttpConnectHook):
            await self.connect_hook.aclose()
