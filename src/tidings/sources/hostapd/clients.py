"""The stations of each access point, as a state machine fed with log lines (Sans-I/O).

Per station::

    DISCONNECTED --authenticated--> AUTHENTICATING --associated--> ASSOCIATED
         ^                                |                             |
         +------ deauthenticated, disassociated, AP-STA-DISCONNECTED ---+

``AP-STA-CONNECTED`` and ``EAPOL-4WAY-HS-COMPLETED`` also mean associated (a log that
starts mid-session may have no ``authenticated`` line). The transitions are the table
:data:`TRANSITIONS`; a line that has no entry for the station's state changes nothing but
its last activity.

**Flaps.** Stations drop and come back within seconds (roaming between bands, a sleeping
phone). With ``flap_window`` > 0 a disconnect is held that long: a station that
associates again meanwhile keeps its connection (and its ``connected_at``), and nobody is
told anything; otherwise :meth:`Stations.tick` reports the disconnect, with the duration
up to the moment it happened. When the AP stops, its stations are disconnected at once.

Time is whatever the caller passes (seconds, one clock); this module never reads a clock,
a file or the hub.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tidings.sources.hostapd.lines import LineKind, LogLine

__all__ = [
    "TRANSITIONS",
    "ApError",
    "ApStarted",
    "ApStopped",
    "ClientConnected",
    "ClientDisconnected",
    "Output",
    "Station",
    "StationState",
    "Stations",
]


class StationState(enum.Enum):
    DISCONNECTED = "disconnected"
    AUTHENTICATING = "authenticating"
    ASSOCIATED = "associated"


_D, _AUTH, _ASSOC = StationState.DISCONNECTED, StationState.AUTHENTICATING, StationState.ASSOCIATED
_JOIN = (LineKind.ASSOCIATED, LineKind.STA_CONNECTED, LineKind.HANDSHAKE_COMPLETED)
_LEAVE = (LineKind.DEAUTHENTICATED, LineKind.DISASSOCIATED, LineKind.STA_DISCONNECTED)

#: (state, line kind) -> next state. What is not here is activity only.
TRANSITIONS: dict[tuple[StationState, LineKind], StationState] = {
    (_D, LineKind.AUTHENTICATED): _AUTH,
    **{(_D, kind): _ASSOC for kind in _JOIN},
    **{(_AUTH, kind): _ASSOC for kind in _JOIN},
    **{(_AUTH, kind): _D for kind in _LEAVE},
    **{(_ASSOC, kind): _D for kind in _LEAVE},
}

#: The reason a disconnect line gives, without "due to …".
_REASONS = {
    LineKind.DEAUTHENTICATED: "deauthenticated",
    LineKind.DISASSOCIATED: "disassociated",
    LineKind.STA_DISCONNECTED: "disconnected",
}


@dataclass(frozen=True, slots=True)
class ClientConnected:
    interface: str
    mac: str
    at: float


@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    interface: str
    mac: str
    at: float
    duration: float
    reason: str


@dataclass(frozen=True, slots=True)
class ApStarted:
    interface: str


@dataclass(frozen=True, slots=True)
class ApStopped:
    interface: str
    reason: str


@dataclass(frozen=True, slots=True)
class ApError:
    interface: str
    message: str


Output = ClientConnected | ClientDisconnected | ApStarted | ApStopped | ApError


@dataclass(slots=True)
class Station:
    """One station of one interface."""

    interface: str
    mac: str
    state: StationState = StationState.DISCONNECTED
    #: When the current connection began (``None`` while not connected).
    connected_at: float | None = None
    last_activity: float = 0.0
    #: Why the last transition happened: the line kind, with hostapd's "due to …".
    reason: str | None = None
    #: When a disconnect is held back by the flap window, the moment it happened.
    leaving_at: float | None = None

    @property
    def connected(self) -> bool:
        """Connected as far as the outside knows (a held disconnect is not yet one)."""
        return self.connected_at is not None


@dataclass(slots=True)
class _Interface:
    stations: dict[str, Station] = field(default_factory=dict)
    #: True after AP-ENABLED, False after it stopped, None before either was seen.
    running: bool | None = None


class Stations:
    """Every interface's stations. Feed lines with :meth:`feed`, the clock with
    :meth:`tick`; both return what the outside must be told, in order."""

    def __init__(self, *, flap_window: float = 10.0, default_interface: str | None = None) -> None:
        if flap_window < 0:
            raise ValueError("flap_window is a number of seconds, 0 or more")
        self.flap_window = flap_window
        self.default_interface = default_interface
        self.interfaces: dict[str, _Interface] = {}
        #: Reconnects within the flap window, not reported.
        self.flaps = 0
        #: Lines that named no interface, for a station seen nowhere, without a default.
        self.unattributed = 0
        self._last_interface: str | None = None

    def stations(self, interface: str) -> list[Station]:
        """The stations of ``interface`` that are connected or on their way."""
        found = self.interfaces.get(interface)
        if found is None:
            return []
        return [s for s in found.stations.values() if s.state is not _D or s.connected]

    def feed(self, line: LogLine, now: float) -> list[Output]:
        interface = self._interface_of(line)
        if interface is None:
            self.unattributed += 1
            return []
        if line.mac is not None:
            return self._station(interface, line, now)
        return self._ap(interface, line, now)

    def tick(self, now: float) -> list[Output]:
        """Report the disconnects whose flap window is over."""
        out: list[Output] = []
        for interface in self.interfaces.values():
            for station in list(interface.stations.values()):
                left = station.leaving_at
                if left is not None and now - left >= self.flap_window:
                    out.append(self._disconnected(station, left))
        return out

    # -- internals -----------------------------------------------------------------------

    def _interface_of(self, line: LogLine) -> str | None:
        if line.interface is not None:
            self._last_interface = line.interface
            return line.interface
        if line.mac is not None:
            # OpenWrt writes EAPOL-4WAY-HS-COMPLETED without the interface.
            for name, interface in self.interfaces.items():
                if line.mac in interface.stations:
                    return name
            return self.default_interface
        # An error that names no interface ("Failed to set beacon parameters") is about
        # the one configured, else the one the log spoke of last.
        return self.default_interface or self._last_interface

    def _station(self, name: str, line: LogLine, now: float) -> list[Output]:
        assert line.mac is not None
        interface = self.interfaces.setdefault(name, _Interface())
        station = interface.stations.get(line.mac)
        if station is None:
            station = interface.stations[line.mac] = Station(name, line.mac)
        station.last_activity = now
        target = TRANSITIONS.get((station.state, line.kind))
        if target is None:
            if station.leaving_at is not None and line.kind in _LEAVE and line.detail:
                # "disassociated due to inactivity" after a bare AP-STA-DISCONNECTED
                # says better why it left.
                station.reason = _reason(line)
            return []
        station.state = target
        if target is _ASSOC:
            station.reason = line.kind.value
            if station.leaving_at is not None:
                station.leaving_at = None
                self.flaps += 1
                return []
            if station.connected_at is None:
                station.connected_at = now
                return [ClientConnected(name, station.mac, now)]
            return []
        if target is _D:
            station.reason = _reason(line)
            if station.connected_at is None:
                # Never connected (an authentication that failed): nothing to keep.
                interface.stations.pop(station.mac, None)
                return []
            if self.flap_window > 0:
                station.leaving_at = now
                return []
            return [self._disconnected(station, now)]
        station.reason = line.kind.value
        return []

    def _disconnected(self, station: Station, at: float) -> ClientDisconnected:
        assert station.connected_at is not None
        event = ClientDisconnected(
            station.interface,
            station.mac,
            at,
            max(0.0, at - station.connected_at),
            station.reason or "disconnected",
        )
        station.connected_at = station.leaving_at = None
        if station.state is _D:
            self.interfaces[station.interface].stations.pop(station.mac, None)
        return event

    def _ap(self, name: str, line: LogLine, now: float) -> list[Output]:
        interface = self.interfaces.setdefault(name, _Interface())
        kind = line.kind
        if kind is LineKind.ERROR:
            return [ApError(name, line.detail or "error")]
        if kind is LineKind.INTERFACE_STATE:
            before, _, after = (line.detail or "").partition("->")
            if after == "ENABLED":
                kind = LineKind.AP_ENABLED
            elif after == "DISABLED" and before != "ENABLED":
                # It never ran: the driver or the configuration refused it.
                return [ApError(name, f"interface state {line.detail}")]
            elif after == "DISABLED":
                return self._stop(name, interface, "disabled", now)
            else:
                return []
        if kind is LineKind.AP_ENABLED:
            if interface.running:
                return []
            interface.running = True
            return [ApStarted(name)]
        if kind is LineKind.AP_DISABLED:
            return self._stop(name, interface, "disabled", now)
        if kind is LineKind.TERMINATING:
            return self._stop(name, interface, "terminating", now)
        return []  # pragma: no cover - every kind without a station is handled above

    def _stop(self, name: str, interface: _Interface, reason: str, now: float) -> list[Output]:
        if interface.running is False:
            return []
        interface.running = False
        out: list[Output] = []
        for station in list(interface.stations.values()):
            if station.connected_at is not None:
                if station.leaving_at is None:
                    station.reason = "ap_stopped"
                station.state = _D
                out.append(self._disconnected(station, station.leaving_at or now))
        interface.stations.clear()
        out.append(ApStopped(name, reason))
        return out


def _reason(line: LogLine) -> str:
    base = _REASONS.get(line.kind, line.kind.value)
    return f"{base} due to {line.detail}" if line.detail else base
