"""dnsmasq's lease file: who has which address and name.

:func:`parse_leases` reads the text (Sans-I/O). :class:`LeasesFile` reads the file again
when it changed (its inode, size or modification time), at most once per call; a file
that is missing or unreadable means no leases, never an error.

The format, one lease per line, fields separated by spaces::

    <expiry, seconds since the epoch; 0 = never> <mac> <ip> <hostname or *> <client-id or *>

DHCPv6 leases (an IAID instead of a MAC) and the ``duid`` line are skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["Lease", "LeasesFile", "parse_leases"]

_MAC = re.compile(r"(?:[0-9A-Fa-f]{1,2}-)?(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})")
#: A lease file larger than this is not read (dnsmasq's own limit is far below).
MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Lease:
    mac: str
    ip: str
    hostname: str | None
    #: Seconds since the epoch; 0 when the lease never expires.
    expires: int


def parse_leases(text: str) -> dict[str, Lease]:
    """The IPv4 leases in ``text``, by lower-case MAC; a later line wins."""
    leases: dict[str, Lease] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        found = _MAC.fullmatch(fields[1])
        if found is None or ":" in fields[2]:
            continue
        mac = found["mac"].lower()
        hostname = None if fields[3] == "*" else fields[3]
        leases[mac] = Lease(mac, fields[2], hostname, int(fields[0]))
    return leases


class LeasesFile:
    """The lease file at ``path``, read again when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.leases: dict[str, Lease] = {}
        self.reads = 0
        self._seen: tuple[int, int, int] | None = None

    def refresh(self) -> dict[str, Lease]:
        """The current leases, reading the file if it changed since the last call."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen, self.leases = None, {}
            return self.leases
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return self.leases
        try:
            with open(self.path, "rb") as file:
                data = file.read(MAX_BYTES)
        except OSError:
            return self.leases
        self._seen = seen
        self.reads += 1
        self.leases = parse_leases(data.decode("utf-8", "replace"))
        return self.leases

    def get(self, mac: str) -> Lease | None:
        return self.refresh().get(mac)
