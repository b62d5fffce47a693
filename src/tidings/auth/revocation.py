"""The deny-list of revoked credentials, kept until the credentials expire by themselves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tidings.identity import Identity

__all__ = ["Revocations"]


class Revocations:
    """Revoked token ids, and clients whose tokens issued before a moment are refused.

    Entries carry the time after which they no longer matter (the tokens' own expiry),
    and are forgotten then, so the list stays as small as the set of live revocations.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._clients: dict[str, tuple[float, float]] = {}

    def revoke(
        self,
        client_id: str,
        *,
        tenant: str | None = None,
        token_ids: Iterable[str] = (),
        until: float,
        at: float | None = None,
    ) -> None:
        """Refuse the tokens of ``client_id`` (of ``tenant``: two tenants' "alice" are
        two clients) issued up to ``at`` (default now) until ``until``."""
        client_id = _key(client_id, tenant)
        at = self._clock() if at is None else at
        for token_id in token_ids:
            self._tokens[token_id] = max(until, self._tokens.get(token_id, 0.0))
        previous = self._clients.get(client_id)
        if previous is not None:
            at, until = max(at, previous[0]), max(until, previous[1])
        self._clients[client_id] = (at, until)

    def is_revoked(self, identity: Identity) -> bool:
        now = self._clock()
        self._prune(now)
        if identity.token_id is not None and identity.token_id in self._tokens:
            return True
        entry = self._clients.get(_key(identity.client_id or "", identity.tenant))
        if entry is None:
            return False
        revoked_at, _ = entry
        # A token issued after the revocation (a fresh login) is accepted again.
        return identity.issued_at is None or identity.issued_at <= revoked_at

    def _prune(self, now: float) -> None:
        for token_id in [t for t, until in self._tokens.items() if until <= now]:
            del self._tokens[token_id]
        for client_id in [c for c, (_, until) in self._clients.items() if until <= now]:
            del self._clients[client_id]

    def __len__(self) -> int:
        return len(self._tokens) + len(self._clients)


def _key(client_id: str, tenant: str | None) -> str:
    return client_id if tenant is None else f"{tenant}\n{client_id}"
