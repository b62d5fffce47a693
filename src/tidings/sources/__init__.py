"""Sources: things outside the hub that it turns into events, chosen by URL scheme.

A :class:`Source` is started and stopped with the hub (``Node.start``/``Node.stop``) and
publishes through the hub's normal path, a :class:`Sink` (the node's ``publish_many``):
validation, the store's idempotency rules and fan-out apply as to any publish. A source
never knows about connections or sockets, and never stops the hub: when what it reads
from is down it says so in :attr:`Source.status` and tries again by itself.

``source_from_url`` builds one from a URL (``--source``), importing its module lazily so
that each kind needs only its own extra:

* ``postgres://…`` / ``postgresql://…``: a transactional outbox table in the application's
  PostgreSQL database (:mod:`tidings.sources.postgres`, extra ``postgres``).
* ``hostapd:///path/to/hostapd.log?leases=…``: a Wi-Fi access point's log, its stations
  connecting and leaving (:mod:`tidings.sources.hostapd`, no extra).
"""

from __future__ import annotations

from tidings.sources.base import Sink, Source

__all__ = ["SCHEMES", "Sink", "Source", "check_source_url", "source_from_url"]

#: The URL schemes ``--source`` accepts.
SCHEMES = ("postgres", "postgresql", "hostapd")


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError("a source URL starts with its scheme, like postgres://host/db")
    return scheme.lower()


def check_source_url(url: str) -> str:
    """``url`` if its scheme names a source kind, else ``ValueError``."""
    scheme = _scheme(url)
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown source scheme {scheme!r}: use postgres://user@host/db?table=tidings_outbox"
            " or hostapd:///var/log/hostapd.log"
        )
    if scheme in ("postgres", "postgresql"):
        from tidings.sources.postgres import parse_url

        parse_url(url)
    if scheme == "hostapd":
        from tidings.sources.hostapd import parse_url as parse_hostapd_url

        parse_hostapd_url(url)
    return url


def source_from_url(url: str) -> Source:
    """Build the source ``url`` names."""
    if check_source_url(url).lower().startswith("hostapd:"):
        from tidings.sources.hostapd import HostapdSource

        return HostapdSource(url)
    from tidings.sources.postgres import PostgresOutbox

    return PostgresOutbox(url)
