"""Channels a connection follows because the server chose them, not the client.

Two sources, both applied at admission (for both stream paths) and kept out of the
client's own rights:

* **automatic channels** (``--auto-channel TEMPLATE``): every connection joins the
  channels its claims fill in, e.g. ``broadcast``, ``tenant:{tenant}/all``,
  ``role:{role}``;
* **server-side subscriptions** (``POST /api/v1/clients/{id}/subscribe``): channels an
  administrator put a client on. Every node records them (the request reaches all nodes
  as a control message), so a connection that comes back within ``ttl`` seconds, on
  any node, joins them again and an SSE stream's resume cursor covers them.

Sans-I/O: no loop, no clock of its own (callers pass ``now``), nothing about transports.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tidings.auth.tokens import claim_value
from tidings.core.channels import validate_channel
from tidings.errors import TidingsError
from tidings.identity import Identity

__all__ = ["AutoChannels", "Grants", "check_template"]

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


class AutoChannels:
    """Channel templates filled from a connection's identity.

    ``{sub}`` (or ``{client_id}``) and ``{tenant}`` come from the identity (after claim
    mapping); any other ``{name}`` from the token's claim of that name, or the path
    into nested claims it names (``{realm_access.roles}``). A claim holding a list gives one
    channel per value (``role:{roles}`` for ``"roles": ["a", "b"]``). A template whose
    field is missing, or whose result is not a valid channel, gives nothing for that
    connection. A tenant's connection never joins a channel outside its tenant.
    """

    def __init__(self, templates: Sequence[str]) -> None:
        for template in templates:
            check_template(template)
        self.templates = tuple(templates)

    def __bool__(self) -> bool:
        return bool(self.templates)

    def channels(self, identity: Identity) -> list[str]:
        """The channels ``identity`` joins, in template order, without repeats."""
        found: dict[str, None] = {}
        for template in self.templates:
            for channel in _fill(template, identity):
                if identity.tenant is None or channel.startswith(f"tenant:{identity.tenant}/"):
                    found[channel] = None
        return list(found)


def check_template(template: str) -> str:
    """``template`` if it can make a valid channel name; else :class:`ValueError`."""
    try:
        validate_channel(_FIELD.sub("x", template))
    except TidingsError:
        raise ValueError(f"{template!r} cannot make a valid channel name") from None
    return template


def _values(identity: Identity, name: str) -> list[str]:
    value: Any
    if name in ("sub", "client_id"):
        value = identity.client_id
    elif name == "tenant":
        value = identity.tenant
    else:
        value = claim_value(identity.claims, name, None)
    items = value if isinstance(value, list | tuple) else [value]
    return [str(v) for v in items if isinstance(v, str | int) and not isinstance(v, bool)]


def _fill(template: str, identity: Identity) -> Iterator[str]:
    names = _FIELD.findall(template)
    results = [template]
    for name in dict.fromkeys(names):
        values = _values(identity, name)
        results = [r.replace("{" + name + "}", v) for r in results for v in values]
    for channel in results:
        try:
            yield validate_channel(channel)
        except TidingsError:
            continue  # a claim value that no channel may hold (a space, say): skipped


class Grants:
    """Server-side subscriptions by client id, kept ``ttl`` seconds after last use.

    Bounded twice: at most ``per_client`` channels for one client (the oldest grant
    gives way), and at most ``max_clients`` clients (the least recently used is
    forgotten). A client's grants are "used" each time one of its connections opens on
    this node, so a client that keeps coming back keeps them.
    """

    def __init__(self, *, ttl: float, per_client: int, max_clients: int = 100_000) -> None:
        self.ttl = ttl
        self.per_client = per_client
        self.max_clients = max_clients
        self._by_client: OrderedDict[str, tuple[float, dict[str, None]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_client)

    def grant(self, client_id: str, channel: str, now: float) -> None:
        _, channels = self._by_client.pop(client_id, (now, {}))
        channels.pop(channel, None)
        channels[channel] = None
        while len(channels) > self.per_client:
            del channels[next(iter(channels))]
        self._by_client[client_id] = (now, channels)
        self.expire(now)
        while len(self._by_client) > self.max_clients:
            self._by_client.popitem(last=False)

    def revoke(self, client_id: str, channel: str) -> None:
        entry = self._by_client.get(client_id)
        if entry is None:
            return
        entry[1].pop(channel, None)
        if not entry[1]:
            del self._by_client[client_id]

    def channels(self, client_id: str | None, now: float) -> list[str]:
        """The client's granted channels (marking them used), or none."""
        if client_id is None:
            return []
        self.expire(now)
        entry = self._by_client.pop(client_id, None)
        if entry is None:
            return []
        self._by_client[client_id] = (now, entry[1])
        return list(entry[1])

    def expire(self, now: float) -> None:
        """Forget clients not seen for ``ttl`` seconds (oldest first, so this is cheap)."""
        while self._by_client:
            client_id, (seen, _) = next(iter(self._by_client.items()))
            if now - seen < self.ttl:
                return
            del self._by_client[client_id]

    def clients(self) -> Iterable[str]:
        return self._by_client.keys()
