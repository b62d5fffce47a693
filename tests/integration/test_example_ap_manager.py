"""Scenario 1 (issue #16.1): the Wi-Fi access-point manager in ``examples/ap_manager``,
served on a real socket, following a real log file, with a real SSE client."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from examples.ap_manager.app import create_app
from httpx_sse import aconnect_sse

from tests.examples_support import run_example
from tests.servers import free_port, running_app
from tests.sse_support import next_event

ROOT = Path(__file__).resolve().parents[2]
PHONE = "02:00:00:00:01:01"


def append(path: Path, *lines: str) -> None:
    with path.open("a") as file:
        file.write("".join(f"{line}\n" for line in lines))


async def expect(events: AsyncIterator[Any], kind: str) -> dict[str, Any]:
    event = await next_event(events)
    assert event.event == kind, (event.event, event.data)
    data: dict[str, Any] = json.loads(event.data)["data"]
    return data


async def test_clients_backfill_and_the_expiry_warning(tmp_path: Path) -> None:
    log, leases = tmp_path / "hostapd.log", tmp_path / "dnsmasq.leases"
    log.write_text("wlan0: interface state UNINITIALIZED->ENABLED\nwlan0: AP-ENABLED\n")
    leases.write_text(f"0 {PHONE} 192.168.50.11 pixel-7 *\n")
    app = create_app(
        str(log),
        str(leases),
        warning=timedelta(seconds=1),
        flap_window="0",
        poll="0.02",
        **{"from": "start"},
    )
    async with (
        running_app(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        url = "/api/v1/interface/wlan0/events"
        async with aconnect_sse(http, "GET", url) as sse:
            events = sse.aiter_sse()
            assert await expect(events, "ap_started") == {}
            append(
                log,
                f"wlan0: STA {PHONE} IEEE 802.11: authenticated",
                f"wlan0: STA {PHONE} IEEE 802.11: associated (aid 1)",
                f"wlan0: AP-STA-CONNECTED {PHONE}",
            )
            connected = await expect(events, "client_connected")
            assert connected["mac"] == PHONE
            assert (connected["ip"], connected["hostname"]) == ("192.168.50.11", "pixel-7")
            [client] = (await http.get("/api/v1/interface/wlan0/clients")).json()["clients"]
            assert client["mac"] == PHONE and client["state"] == "associated"
            assert client["ip"] == "192.168.50.11" and client["connection_duration"] >= 0
            # The lease changes (dnsmasq renames a new file over it); the source sees it.
            new = tmp_path / "leases.new"
            new.write_text(f"0 {PHONE} 192.168.50.12 pixel-7 *\n")
            os.replace(new, leases)
            append(log, f"wlan0: STA {PHONE} IEEE 802.11: deauthenticated due to inactivity")
            gone = await expect(events, "client_disconnected")
            assert gone["ip"] == "192.168.50.12"
            assert gone["reason"] == "deauthenticated due to inactivity"
            assert (await http.get("/api/v1/interface/wlan0/clients")).json()["clients"] == []

            # Expiry in an hour: the warning waits 5 minutes (here 1 s) before it.
            expires = datetime.now(UTC) + timedelta(hours=1)
            answer = await http.put(
                "/api/v1/interface/wlan0/expiry", json={"expires_at": expires.isoformat()}
            )
            assert answer.status_code == 202, answer.text
            [pending] = await app.state.hub.scheduled(channel="network:wlan0")
            assert abs(pending.at - (expires.timestamp() - 1)) < 0.01
            # Moved: it now expires in 1.5 s, so the warning comes in 0.5 s.
            soon = datetime.now(UTC) + timedelta(seconds=1.5)
            await http.put("/api/v1/interface/wlan0/expiry", json={"expires_at": soon.isoformat()})
            warning = await expect(events, "network_expiring")
            assert warning == {"net_id": "wlan0", "time_remaining": 1}
            assert await app.state.hub.scheduled(channel="network:wlan0") == []
            # Stopped: the pending warning is cancelled.
            await http.put(
                "/api/v1/interface/wlan0/expiry", json={"expires_at": expires.isoformat()}
            )
            assert len(await app.state.hub.scheduled(channel="network:wlan0")) == 1
            assert (await http.delete("/api/v1/interface/wlan0/expiry")).status_code == 204
            assert await app.state.hub.scheduled(channel="network:wlan0") == []
            assert (await http.delete("/api/v1/interface/wlan0/expiry")).status_code == 404

        # A fresh client gets the network's recent past first (backfill), in order.
        async with aconnect_sse(http, "GET", url) as sse:
            events = sse.aiter_sse()
            kinds = [(await next_event(events)).event for _ in range(4)]
            assert kinds == [
                "ap_started",
                "client_connected",
                "client_disconnected",
                "network_expiring",
            ]


def test_runs_as_documented(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "examples.ap_manager",
        "--port",
        str(port),
        "--log",
        "tests/data/hostapd/sample.log",
        "--leases",
        "tests/data/hostapd/dnsmasq.leases",
    ]
    url = f"http://127.0.0.1:{port}/api/v1/interface/wlan0/clients"

    def listed() -> list[dict[str, str]]:
        found: list[dict[str, str]] = httpx.get(url, timeout=1).json()["clients"]
        if not found:
            raise httpx.TransportError("the log is not read yet")
        return found

    with run_example(command, tmp_path / "server.log", ready=listed):
        clients = {client["mac"]: client for client in listed()}
        assert clients[PHONE]["hostname"] == "pixel-7"
        assert clients[PHONE]["state"] == "associated"
