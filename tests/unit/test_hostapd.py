"""The hostapd source's Sans-I/O parts, on real hostapd lines (tests/data/hostapd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.sources import check_source_url
from tidings.sources.hostapd import HostapdOptions, HostapdSource, parse_url
from tidings.sources.hostapd.clients import (
    ApError,
    ApStarted,
    ApStopped,
    ClientConnected,
    ClientDisconnected,
    Stations,
    StationState,
)
from tidings.sources.hostapd.leases import parse_leases
from tidings.sources.hostapd.lines import LineKind, LogLine, parse_line

DATA = Path(__file__).resolve().parents[1] / "data" / "hostapd"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def parsed(name: str) -> list[LogLine | None]:
    return [parse_line(line) for line in lines(name)]


def test_each_line_kind_in_each_framing() -> None:
    plain, syslog, stamped = parsed("plain.log"), parsed("syslog.log"), parsed("timestamps.log")
    assert plain[2] == LogLine(LineKind.AP_ENABLED, "wlan0")
    assert plain[4] == LogLine(
        LineKind.DEAUTHENTICATED, "wlan1", "02:00:00:00:01:01", "inactivity (timer DEAUTH/REMOVE)"
    )
    assert plain[5] == LogLine(LineKind.AUTHENTICATED, "wlan1", "02:00:00:00:01:01")
    assert plain[6] == LogLine(LineKind.ASSOCIATED, "wlan1", "02:00:00:00:01:01")
    assert plain[7] == LogLine(LineKind.STA_CONNECTED, "wlan1", "02:00:00:00:01:01")
    assert plain[10] == LogLine(LineKind.STA_DISCONNECTED, "wlan1", "02:00:00:00:01:01")
    assert plain[13] == LogLine(LineKind.ERROR, None, None, "Failed to set beacon parameters")
    assert plain[14] == LogLine(LineKind.DISASSOCIATED, "wlan1", "02:00:00:00:01:02", "inactivity")
    assert plain[15] == LogLine(LineKind.ASSOCIATED, "wlan0", "02:00:00:00:01:03")  # no aid
    assert plain[18] == LogLine(LineKind.INTERFACE_STATE, "wlan0", None, "ENABLED->DISABLED")
    assert plain[19] == LogLine(LineKind.AP_DISABLED, "wlan0")
    assert plain[20] == LogLine(LineKind.TERMINATING, "wlan0")
    # journald, OpenWrt logread, classic syslog: the same messages.
    assert syslog[0] == LogLine(LineKind.ASSOCIATED, "wlan0", "02:00:00:00:02:01")
    assert syslog[4] == LogLine(LineKind.HANDSHAKE_COMPLETED, "wlan0", "02:00:00:00:02:01")
    assert syslog[10] == LogLine(LineKind.STA_CONNECTED, "wlan1", "02:00:00:00:02:02")
    assert syslog[19] == LogLine(LineKind.HANDSHAKE_COMPLETED, None, "02:00:00:00:02:05")
    assert syslog[21] == LogLine(
        LineKind.ERROR, None, None, "nl80211 driver initialization failed."
    )
    assert syslog[25] == LogLine(LineKind.INTERFACE_STATE, "phy0-ap0", None, "ENABLED->DISABLED")
    # -t: the timestamp is kept; trailing fields after the MAC are ignored.
    assert stamped[4] == LogLine(
        LineKind.STA_CONNECTED, "wlan0", "02:00:00:00:03:01", None, 1674902301.041187
    )
    assert parse_line("WLAN0: STA 02:00:00:00:0A:BC IEEE 802.11: authenticated") == LogLine(
        LineKind.AUTHENTICATED, "WLAN0", "02:00:00:00:0a:bc"
    )


def test_unknown_and_garbage_lines_are_none() -> None:
    unknown = [n for n, line in enumerate(parsed("syslog.log")) if line is None]
    # RADIUS accounting, WPA handshake, nl80211 EAPOL TX, AP-STA-POLL-OK, netifd.
    assert unknown == [2, 3, 11, 12, 20]
    for garbage in [
        "",
        "   ",
        "\x00\xff",
        "wlan0:",
        "STA 02:00 IEEE 802.11: authenticated",
        "wlan0: AP-STA-CONNECTED not-a-mac",
        "x" * 10_000,
        "wlan0: STA 02:00:00:00:00:01 IEEE 802.11: exploded",
    ]:
        assert parse_line(garbage) is None, garbage


def feed_all(stations: Stations, name: str, now: float = 100.0) -> list[object]:
    out: list[object] = []
    for text in lines(name):
        line = parse_line(text)
        if line is not None:
            out += stations.feed(line, now)
    return out


def test_a_session_from_the_plain_log() -> None:
    stations = Stations(flap_window=0)
    out = feed_all(stations, "plain.log")
    assert out == [
        ApStarted("wlan0"),
        ClientConnected("wlan1", "02:00:00:00:01:01", 100.0),
        ClientDisconnected("wlan1", "02:00:00:00:01:01", 100.0, 0.0, "disconnected"),
        # It names no interface: the one the log spoke of last (RaspAP#666: wlan1).
        ApError("wlan1", "Failed to set beacon parameters"),
        ClientConnected("wlan0", "02:00:00:00:01:03", 100.0),
        ClientDisconnected("wlan0", "02:00:00:00:01:03", 100.0, 0.0, "disassociated"),
        ApStopped("wlan0", "disabled"),
    ]


def test_transitions_and_reasons() -> None:
    stations = Stations(flap_window=0, default_interface="wlan0")
    mac = "02:00:00:00:00:01"

    def feed(message: str, now: float) -> list[object]:
        line = parse_line(f"wlan0: {message}")
        assert line is not None
        return list(stations.feed(line, now))

    assert feed(f"STA {mac} IEEE 802.11: authenticated", 1) == []
    [station] = stations.stations("wlan0")
    assert station.state is StationState.AUTHENTICATING and not station.connected
    assert feed(f"STA {mac} IEEE 802.11: associated (aid 1)", 2) == [
        ClientConnected("wlan0", mac, 2)
    ]
    assert feed(f"AP-STA-CONNECTED {mac}", 2.5) == []  # already associated: activity
    assert station.state is StationState.ASSOCIATED and station.last_activity == 2.5
    assert feed(f"STA {mac} IEEE 802.11: disassociated due to inactivity", 32) == [
        ClientDisconnected("wlan0", mac, 32, 30, "disassociated due to inactivity")
    ]
    assert stations.stations("wlan0") == []
    # An authentication that never associates, then leaves: nobody is told.
    assert feed(f"STA {mac} IEEE 802.11: authenticated", 40) == []
    assert feed(f"STA {mac} IEEE 802.11: deauthenticated", 41) == []
    assert stations.stations("wlan0") == []


def test_a_reconnect_within_the_flap_window_is_not_reported() -> None:
    stations = Stations(flap_window=5)
    out = feed_all(stations, "syslog.log")[:2]
    # 02:…:02:01 connected, dropped and came back at once (morrownr#27): one connection.
    assert out[0] == ClientConnected("wlan0", "02:00:00:00:02:01", 100.0)
    assert stations.flaps == 1
    connected = {s.mac for s in stations.stations("wlan0")}
    assert "02:00:00:00:02:01" in connected


def test_a_disconnect_is_reported_when_the_flap_window_ends() -> None:
    stations = Stations(flap_window=5)
    mac = "02:00:00:00:00:07"
    for message, now in [(f"AP-STA-CONNECTED {mac}", 10.0), (f"AP-STA-DISCONNECTED {mac}", 20.0)]:
        line = parse_line(f"wlan0: {message}")
        assert line is not None
        stations.feed(line, now)
    # A more precise reason that follows a bare disconnect replaces it.
    line = parse_line(f"wlan0: STA {mac} IEEE 802.11: deauthenticated due to inactivity")
    assert line is not None
    assert stations.feed(line, 20.5) == []
    assert stations.tick(24.9) == []
    assert stations.tick(25.0) == [
        ClientDisconnected("wlan0", mac, 20.0, 10.0, "deauthenticated due to inactivity")
    ]
    assert stations.tick(60) == [] and stations.stations("wlan0") == []


def test_stopping_the_ap_disconnects_its_clients_once() -> None:
    stations = Stations(flap_window=30)
    out = feed_all(stations, "timestamps.log")[:2]
    assert out == [ApStarted("wlan0"), ClientConnected("wlan0", "02:00:00:00:03:01", 100.0)]
    # The client left (held by the flap window); the AP stops: both are told at once.
    for text in [
        "wlan0: interface state ENABLED->DISABLED",
        "wlan0: AP-DISABLED",
        "wlan0: CTRL-EVENT-TERMINATING",
    ]:
        line = parse_line(text)
        assert line is not None
        out += stations.feed(line, 200)
    assert out[2:] == [
        ClientDisconnected("wlan0", "02:00:00:00:03:01", 100.0, 0.0, "disconnected"),
        ApStopped("wlan0", "disabled"),
    ]


def test_an_ap_that_never_started_is_an_error() -> None:
    stations = Stations(flap_window=0)
    out = feed_all(stations, "syslog.log")
    assert ApError("wlp0s20f0u1u2", "interface state UNINITIALIZED->DISABLED") in out
    assert ApStopped("phy0-ap0", "disabled") in out
    assert ApStopped("phy0-ap0", "terminating") not in out  # stopped once
    # EAPOL-4WAY-HS-COMPLETED without an interface went to the station's (OpenWrt).
    assert stations.unattributed == 0
    assert {s.mac for s in stations.stations("wlan1-1")} == {"02:00:00:00:02:05"}


def test_leases() -> None:
    leases = parse_leases((DATA / "dnsmasq.leases").read_text() + "garbage\n1 2 3\n")
    assert set(leases) == {"02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:03:01"}
    assert leases["02:00:00:00:01:01"].ip == "192.168.50.11"
    assert leases["02:00:00:00:01:01"].hostname == "pixel-7"
    assert leases["02:00:00:00:02:01"].hostname is None
    assert leases["02:00:00:00:03:01"].expires == 0
    assert parse_leases("1 1-02:00:00:00:00:09 10.0.0.9 tv *")["02:00:00:00:00:09"].ip == (
        "10.0.0.9"
    )


def test_urls() -> None:
    options = parse_url(
        "hostapd:///var/log/hostapd.log?leases=/var/lib/misc/dnsmasq.leases"
        "&interface=wlan0&flap_window=3&poll=0.1&from=start"
    )
    assert options == HostapdOptions(
        "/var/log/hostapd.log", "/var/lib/misc/dnsmasq.leases", "wlan0", 3.0, 0.1, True
    )
    assert parse_url("hostapd:///log") == HostapdOptions("/log")
    assert check_source_url("hostapd:///var/log/hostapd.log") == "hostapd:///var/log/hostapd.log"
    for bad in [
        "hostapd://host/log",
        "hostapd:///log?flap_window=-1",
        "hostapd:///log?poll=x",
        "hostapd:///log?from=middle",
        "hostapd:///log?colour=red",
        "hostapd:///log?interface=a%20b",
    ]:
        with pytest.raises(ValueError):
            check_source_url(bad)


def test_the_source_turns_lines_into_publications(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text("0 02:00:00:00:01:01 192.168.50.11 pixel-7 *\n")
    clock = [1_700_000_000.0]
    source = HostapdSource(
        HostapdOptions(str(tmp_path / "log"), str(leases), "wlan0", 0.0), clock=lambda: clock[0]
    )
    publications = source.feed([*lines("sample.log"), "garbage"])
    assert [(p.channel, p.type) for p in publications] == [
        ("network:wlan0", "ap_started"),
        ("network:wlan0", "client_connected"),
        ("network:wlan0", "client_connected"),
        ("network:wlan0", "client_disconnected"),
    ]
    assert publications[1].data == {
        "mac": "02:00:00:00:01:01",
        "ip": "192.168.50.11",
        "hostname": "pixel-7",
        "connection_time": "2023-11-14T22:13:20.000+00:00",
    }
    assert publications[3].data == {
        "mac": "02:00:00:00:02:01",
        "ip": None,
        "duration_connected": 0.0,
        "reason": "disconnected",
    }
    assert (source.lines, source.unknown) == (14, 3)
    clock[0] += 90
    [client] = source.clients("wlan0")
    assert client == {
        "mac": "02:00:00:00:01:01",
        "ip": "192.168.50.11",
        "hostname": "pixel-7",
        "state": "associated",
        "connected_at": "2023-11-14T22:13:20.000+00:00",
        "connection_duration": 90.0,
        "last_activity": "2023-11-14T22:13:20.000+00:00",
    }
    assert source.clients("wlan9") == []
