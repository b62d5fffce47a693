"""An HTTP request as plain facts, and the small rules every endpoint reads it by.

Both stream paths (the ASGI endpoints and the native front) and the HTTP API describe a
request with :class:`RequestFacts`; nothing here knows ASGI or sockets. Each rule (how a
header is found, which address a rate limit counts against, which address a request
comes from behind a trusted proxy) is written once, here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Headers",
    "Peer",
    "RequestFacts",
    "client_ip",
    "facts_from_scope",
    "format_peer",
    "forwarded_peer",
    "header",
]

Headers = Iterable[tuple[bytes, bytes]]
#: A peer's (host, port), as ASGI's ``scope["client"]``.
Peer = tuple[str, int]


def header(headers: Headers, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), decoded as Latin-1."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def client_ip(peer: Peer | None) -> str:
    """The address rate limits count against: the peer's host, ``"unknown"`` without one."""
    return peer[0] if peer else "unknown"


def format_peer(peer: Peer | None) -> str | None:
    """``host:port`` for logs and ``GET /api/v1/connections``."""
    return f"{peer[0]}:{peer[1]}" if peer else None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a transport knows about a request before anything is decided."""

    method: str
    path: str
    query_string: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    peer: Peer | None = None
    #: Values taken from the path by the route that matched (``{"channel": ...}``).
    path_params: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: bytes) -> str | None:
        return header(self.headers, name)


def facts_from_scope(scope: Mapping[str, Any]) -> RequestFacts:
    """The facts of an ASGI ``http`` or ``websocket`` scope (its server resolved proxies)."""
    client = scope.get("client")
    return RequestFacts(
        method=scope.get("method", "GET"),
        path=scope.get("path", ""),
        query_string=scope.get("query_string", b""),
        headers=list(scope.get("headers", ())),
        peer=(str(client[0]), int(client[1])) if client else None,
        path_params=scope.get("path_params", {}),
    )


def forwarded_peer(
    peer: Peer | None, headers: Headers, trusted: str | Iterable[str]
) -> Peer | None:
    """The client behind trusted proxies, from ``X-Forwarded-For``.

    ``trusted`` is ``"*"``, or addresses and networks (a comma-separated string or an
    iterable), as uvicorn's ``--forwarded-allow-ips``. Only a peer that is a trusted proxy
    is believed; its list is read from the right, and the first address that is not a
    trusted proxy is the client (with port 0: the proxy does not say it).
    """
    if peer is None:
        return None
    networks = _networks(trusted)
    if not _is_trusted(peer[0], networks):
        return peer
    forwarded = header(headers, b"x-forwarded-for")
    if not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return (hop, 0)
    return (hops[0], 0) if hops else peer


_Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None


def _networks(trusted: str | Iterable[str]) -> _Networks:
    items = trusted.split(",") if isinstance(trusted, str) else list(trusted)
    items = [item.strip() for item in items if item.strip()]
    if "*" in items:
        return None  # everything is trusted
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue  # a host name or a unix socket path: never a TCP peer's address
    return networks


def _is_trusted(host: str, networks: _Networks) -> bool:
    if networks is None:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)
