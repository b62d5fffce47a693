"""hostapd's log lines, parsed: text in, :class:`LogLine` out (Sans-I/O).

Three framings are accepted, then the same messages inside them:

* plain, as hostapd writes to stdout: ``wlan0: AP-STA-CONNECTED 02:00:00:00:00:01``;
* with hostapd's ``-t`` timestamps: ``1674902301.041187: wlan0: …``;
* syslog-prefixed (rsyslog, journald, OpenWrt ``logread``): ``… hostapd[3930]: wlan0: …``.

A line this module does not know is answered with ``None``: the caller counts it and goes
on. This module must never read files or know about the hub.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["LineKind", "LogLine", "parse_line"]


class LineKind(enum.Enum):
    AUTHENTICATED = "authenticated"
    ASSOCIATED = "associated"
    DEAUTHENTICATED = "deauthenticated"
    DISASSOCIATED = "disassociated"
    STA_CONNECTED = "sta_connected"
    STA_DISCONNECTED = "sta_disconnected"
    HANDSHAKE_COMPLETED = "handshake_completed"
    AP_ENABLED = "ap_enabled"
    AP_DISABLED = "ap_disabled"
    INTERFACE_STATE = "interface_state"
    TERMINATING = "terminating"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LogLine:
    kind: LineKind
    #: The interface the line names (``wlan0``), or ``None`` when it names none.
    interface: str | None = None
    #: The station, lower-case, for station lines.
    mac: str | None = None
    #: ``due to …`` of a (de)authentication, ``FROM->TO`` of a state change, the text of
    #: an error.
    detail: str | None = None
    #: Seconds since the epoch, from ``-t``.
    timestamp: float | None = None


_MAC = r"(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})"
_TIMESTAMP = re.compile(r"(?P<ts>\d{9,11}\.\d{1,6}): (?P<rest>.*)")
# The program tag of a syslog line; everything before it is the logger's.
_SYSLOG = re.compile(r".*?\bhostapd(?:\[\d+\])?: (?P<rest>.*)")
_INTERFACE = re.compile(r"(?P<iface>[A-Za-z][\w.-]{0,15}): (?P<msg>.*)")
# Prefixes hostapd writes that are modules, not interfaces.
_MODULES = frozenset({"nl80211", "wpa", "radius", "eapol", "wps", "ctrl_iface", "ieee 802.11"})

_STA = re.compile(
    rf"STA {_MAC} IEEE 802\.11: (?P<what>authenticated|(?:re)?associated|deauthenticated"
    r"|disassociated)(?: \(aid \d+\))?(?: due to (?P<reason>.+))?"
)
_STA_KINDS = {
    "authenticated": LineKind.AUTHENTICATED,
    "associated": LineKind.ASSOCIATED,
    "reassociated": LineKind.ASSOCIATED,
    "deauthenticated": LineKind.DEAUTHENTICATED,
    "disassociated": LineKind.DISASSOCIATED,
}
# Newer hostapd adds fields after the MAC (`auth_alg=open`, `keyid=…`).
_EVENT_STA = re.compile(
    rf"(?P<what>AP-STA-CONNECTED|AP-STA-DISCONNECTED|EAPOL-4WAY-HS-COMPLETED) {_MAC}(?: .*)?"
)
_EVENT_STA_KINDS = {
    "AP-STA-CONNECTED": LineKind.STA_CONNECTED,
    "AP-STA-DISCONNECTED": LineKind.STA_DISCONNECTED,
    "EAPOL-4WAY-HS-COMPLETED": LineKind.HANDSHAKE_COMPLETED,
}
_STATE = re.compile(r"interface state (?P<change>[A-Z_]+->[A-Z_]+)")
_BARE = {
    "AP-ENABLED": LineKind.AP_ENABLED,
    "AP-DISABLED": LineKind.AP_DISABLED,
    "CTRL-EVENT-TERMINATING": LineKind.TERMINATING,
}
# What hostapd says when the AP cannot run ("nl80211 driver initialization failed.",
# "Failed to set beacon parameters", "Could not read interface uap0 flags: …").
_ERROR = re.compile(r"(?i).*\b(?:failed|could not)\b.*")


def parse_line(text: str) -> LogLine | None:
    """The line ``text`` (without its newline) as a :class:`LogLine`, or ``None``."""
    text = text.strip()
    timestamp = None
    found = _TIMESTAMP.fullmatch(text)
    if found:
        timestamp = float(found["ts"])
        text = found["rest"]
    else:
        found = _SYSLOG.fullmatch(text)
        if found:
            text = found["rest"].strip()
    interface = None
    found = _INTERFACE.fullmatch(text)
    if found and found["iface"].lower() not in _MODULES:
        interface, text = found["iface"], found["msg"].strip()
    line = _message(text)
    if line is None:
        return None
    kind, mac, detail = line
    if kind is LineKind.ERROR and found and interface is None:
        detail = f"{found['iface']}: {detail}"  # the module that failed says which
    return LogLine(kind, interface, mac.lower() if mac else None, detail, timestamp)


def _message(text: str) -> tuple[LineKind, str | None, str | None] | None:
    found = _STA.fullmatch(text)
    if found:
        return _STA_KINDS[found["what"]], found["mac"], found["reason"]
    found = _EVENT_STA.fullmatch(text)
    if found:
        return _EVENT_STA_KINDS[found["what"]], found["mac"], None
    if text in _BARE:
        return _BARE[text], None, None
    found = _STATE.fullmatch(text)
    if found:
        return LineKind.INTERFACE_STATE, None, found["change"]
    if text.startswith("STA "):
        return None  # RADIUS, WPA, … about one station: not errors of the AP
    if _ERROR.fullmatch(text):
        return LineKind.ERROR, None, text
    return None
