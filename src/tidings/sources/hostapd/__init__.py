"""hostapd, as a source: a Wi-Fi access point's log turned into events.

``hostapd:///var/log/hostapd.log?leases=/var/lib/misc/dnsmasq.leases`` follows the log
(:mod:`.follow`), parses each line (:mod:`.lines`), runs each station through its state
machine (:mod:`.clients`), adds the IP address and host name from dnsmasq's leases
(:mod:`.leases`) and publishes to ``network:<interface>``:

* ``client_connected`` ``{mac, ip, hostname, connection_time}``
* ``client_disconnected`` ``{mac, ip, duration_connected, reason}``
* ``ap_started`` ``{}``, ``ap_stopped`` ``{reason}``, ``ap_error`` ``{message}``

URL options: ``leases`` (path), ``interface`` (for lines that name none), ``flap_window``
(seconds, default 10), ``poll`` (seconds, default 0.25), ``from`` (``end``, the default,
or ``start`` to read what the log already holds).

It never stops the hub: a missing log is waited for, a failed publish is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tidings.core.channels import validate_channel
from tidings.core.events import Publication
from tidings.errors import TidingsError
from tidings.sources.base import TaskSource
from tidings.sources.hostapd.clients import (
    ApError,
    ApStarted,
    ApStopped,
    ClientConnected,
    ClientDisconnected,
    Output,
    Stations,
)
from tidings.sources.hostapd.follow import LogFollower
from tidings.sources.hostapd.leases import LeasesFile
from tidings.sources.hostapd.lines import parse_line

if TYPE_CHECKING:
    from tidings.sources.base import Sink

__all__ = ["HostapdOptions", "HostapdSource", "parse_url"]

log = logging.getLogger("tidings.sources.hostapd")

#: Publications waiting for a hub that cannot take them; the oldest go first past this.
MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class HostapdOptions:
    """What a ``hostapd://`` URL says."""

    path: str
    leases: str | None = None
    interface: str | None = None
    flap_window: float = 10.0
    poll: float = 0.25
    from_start: bool = False


def parse_url(url: str) -> HostapdOptions:
    """``hostapd:///var/log/hostapd.log?leases=…&interface=…&flap_window=…&poll=…&from=…``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "hostapd":
        raise ValueError("a hostapd source URL starts with hostapd://")
    if parts.netloc:
        raise ValueError("a hostapd source reads a local file: hostapd:///path/to/hostapd.log")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError("a hostapd source needs the log's absolute path: hostapd:///var/log/…")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    known = {"leases", "interface", "flap_window", "poll", "from"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ValueError(f"unknown hostapd source option {unknown[0]!r}: use {sorted(known)}")
    try:
        flap_window = float(query.get("flap_window", 10.0))
        poll = float(query.get("poll", 0.25))
    except ValueError:
        raise ValueError("flap_window and poll are numbers of seconds") from None
    if not 0 <= flap_window <= 3600:
        raise ValueError("flap_window must be between 0 and 3600 seconds")
    if not 0.01 <= poll <= 60:
        raise ValueError("poll must be between 0.01 and 60 seconds")
    start = query.get("from", "end")
    if start not in ("start", "end"):
        raise ValueError("from is start (read the whole log) or end (only new lines)")
    interface = query.get("interface") or None
    if interface is not None:
        try:
            validate_channel(f"network:{interface}")
        except TidingsError:
            raise ValueError(f"interface {interface!r} is not an interface name") from None
    return HostapdOptions(
        path, query.get("leases") or None, interface, flap_window, poll, start == "start"
    )


class HostapdSource(TaskSource):
    """Follows a hostapd log and publishes what happens to its access points."""

    def __init__(
        self,
        url_or_options: str | HostapdOptions,
        *,
        clock: Any = time.time,
    ) -> None:
        super().__init__()
        options = parse_url(url_or_options) if isinstance(url_or_options, str) else url_or_options
        self.options = options
        self.name = f"hostapd://{options.path}"
        self.follower = LogFollower(options.path, from_start=options.from_start)
        self.leases = LeasesFile(options.leases) if options.leases else None
        self.stations = Stations(
            flap_window=options.flap_window, default_interface=options.interface
        )
        self._clock = clock
        self._pending: deque[Publication] = deque()
        #: Lines read, lines not understood (skipped), events published or dropped.
        self.lines = 0
        self.unknown = 0
        self.published = 0
        self.dropped = 0

    def _closed(self) -> None:
        self.follower.close()

    def clients(self, interface: str) -> list[dict[str, Any]]:
        """The stations of ``interface`` that are connected or authenticating."""
        now = self._clock()
        out = []
        for station in self.stations.stations(interface):
            lease = self.leases.get(station.mac) if self.leases else None
            connected = station.connected_at
            out.append(
                {
                    "mac": station.mac,
                    "ip": lease.ip if lease else None,
                    "hostname": lease.hostname if lease else None,
                    "state": station.state.value,
                    "connected_at": _iso(connected) if connected is not None else None,
                    "connection_duration": round(now - connected, 3)
                    if connected is not None
                    else None,
                    "last_activity": _iso(station.last_activity),
                }
            )
        return out

    def feed(self, lines: list[str]) -> list[Publication]:
        """The publications ``lines`` (and the clock) lead to (no I/O but the leases)."""
        now = self._clock()
        outputs: list[Output] = []
        for text in lines:
            self.lines += 1
            line = parse_line(text)
            if line is None:
                self.unknown += 1
                continue
            outputs += self.stations.feed(line, now)
        outputs += self.stations.tick(now)
        return [self._publication(output) for output in outputs]

    # -- internals -----------------------------------------------------------------------

    async def _run(self, sink: Sink) -> None:
        self._status = "consuming"
        while True:
            lines = await asyncio.to_thread(self.follower.poll)
            for publication in self.feed(lines):
                if len(self._pending) >= MAX_PENDING:
                    self._pending.popleft()
                    self.dropped += 1
                self._pending.append(publication)
            await self._flush(sink)
            if not self.follower.behind:  # after a full read, more is waiting
                await asyncio.sleep(self.options.poll)

    async def _flush(self, sink: Sink) -> None:
        while self._pending:
            batch = [self._pending[i] for i in range(min(len(self._pending), sink.max_batch_size))]
            try:
                await sink.publish_many(batch)
            except TidingsError as exc:
                if exc.status < 500:  # refused, and would be again: drop, go on
                    log.warning("%s: the hub refused %d events: %s", self.name, len(batch), exc)
                    for _ in batch:
                        self._pending.popleft()
                    self.dropped += len(batch)
                    continue
                if self._status != "failing":
                    log.warning("%s: cannot publish (%s); will try again", self.name, exc)
                self._status = "failing"
                return
            for _ in batch:
                self._pending.popleft()
            self.published += len(batch)
            self._status = "consuming"

    def _publication(self, output: Output) -> Publication:
        channel = f"network:{output.interface}"
        if isinstance(output, ClientConnected | ClientDisconnected):
            lease = self.leases.get(output.mac) if self.leases else None
            ip = lease.ip if lease else None
            if isinstance(output, ClientConnected):
                data: dict[str, Any] = {
                    "mac": output.mac,
                    "ip": ip,
                    "hostname": lease.hostname if lease else None,
                    "connection_time": _iso(output.at),
                }
                return Publication(channel, "client_connected", data)
            data = {
                "mac": output.mac,
                "ip": ip,
                "duration_connected": round(output.duration, 3),
                "reason": output.reason,
            }
            return Publication(channel, "client_disconnected", data)
        if isinstance(output, ApStarted):
            return Publication(channel, "ap_started", {})
        if isinstance(output, ApStopped):
            return Publication(channel, "ap_stopped", {"reason": output.reason})
        assert isinstance(output, ApError)
        return Publication(channel, "ap_error", {"message": output.message})


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
