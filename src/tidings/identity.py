"""Who is on the other end of a connection or request, and what they may do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings.core.channels import channel_matches, personal_channel

__all__ = ["ANONYMOUS", "HUB_CLAIMS", "Identity"]

#: The token claims an identity is read from (SPEC §6, §8), besides ``exp``, ``iat`` and
#: ``jti``; ``--jwt-claim`` may read each of them from another claim.
HUB_CLAIMS = ("sub", "tenant", "channels", "publish", "commands", "admin")


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified client identity. ``None`` patterns mean "anything" (open mode)."""

    client_id: str | None = None
    tenant: str | None = None
    admin: bool = False
    subscribe: tuple[str, ...] | None = None
    publish: tuple[str, ...] | None = None
    #: Patterns of the commands the client may run (claim ``commands``); admins run any.
    commands: tuple[str, ...] | None = None
    #: Unix time at which the credential expires, if it does.
    expires_at: float | None = None
    token_id: str | None = None
    #: Unix time the credential was issued (``iat``), if known.
    issued_at: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    def tenant_allows(self, channel: str) -> bool:
        """Whether ``channel`` lies inside the identity's tenant (any, without one)."""
        return self.tenant is None or channel.startswith(f"tenant:{self.tenant}/")

    def may_subscribe(self, channel: str) -> bool:
        # A client's own personal channel is always its own.
        if self.client_id is not None and channel == personal_channel(self.client_id, self.tenant):
            return True
        if not self.tenant_allows(channel):
            return False
        patterns = self.subscribe
        return patterns is None or any(channel_matches(channel, p) for p in patterns)

    def may_publish(self, channel: str) -> bool:
        if not self.tenant_allows(channel):
            return False
        patterns = self.publish
        return patterns is None or any(channel_matches(channel, p) for p in patterns)

    def may_command(self, name: str) -> bool:
        # Command names are not channels: no tenant prefix applies to them.
        if self.admin:
            return True
        patterns = self.commands
        return patterns is None or any(channel_matches(name, p) for p in patterns)


#: The identity of every request in open mode: anyone may do anything.
ANONYMOUS = Identity(admin=True)
