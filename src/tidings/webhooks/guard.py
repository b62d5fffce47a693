"""Which addresses a webhook may reach: not the hub's own network, unless allowed.

A tenant that registers ``http://10.0.0.5/admin`` or ``http://169.254.169.254/`` must not
make the hub call internal services. URLs are checked when an endpoint is registered and
the host's addresses again before every attempt (DNS may change). Loopback, private,
link-local, shared, multicast, reserved and unspecified addresses are refused unless the
``webhook_allow_private`` setting says otherwise.

What this does not stop: a name that resolves to a public address for the check and to a
private one for the connection an instant later (DNS rebinding). Behind an egress proxy
or firewall that blocks internal ranges, that gap closes too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from tidings.errors import BadRequest

__all__ = ["AddressRefused", "check_url", "resolve_allowed"]


class AddressRefused(BadRequest):
    """A webhook URL whose host is (or resolves to) an address the hub may not call."""

    code = "address_not_allowed"


def check_url(url: str) -> tuple[str, int]:
    """``url``'s host and port, if it is an absolute http(s) URL; else :class:`BadRequest`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("a webhook URL is an absolute http:// or https:// URL", code="invalid_url")
    if parts.username or parts.password:
        raise BadRequest("a webhook URL may not carry a user or password", code="invalid_url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("the webhook URL's port is not a number", code="invalid_url") from None
    return parts.hostname, port


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def resolve_allowed(url: str, *, allow_private: bool) -> None:
    """Raise :class:`AddressRefused` when ``url``'s host is or resolves to an internal
    address (and that is not allowed); a name that does not resolve passes here and
    fails when the request is made."""
    host, port = check_url(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return
    for *_, sockaddr in infos:
        if _private(str(sockaddr[0])):
            raise AddressRefused(
                f"the webhook host {host!r} is an internal address "
                "(the webhook_allow_private setting allows it)"
            )
