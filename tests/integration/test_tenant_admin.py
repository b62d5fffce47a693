"""An admin token of one tenant reaches that tenant only (#17.0): every admin endpoint that
targets clients or lists what the hub holds, with the same client id in two tenants."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.servers import RunningHub, running_hub
from tidings.auth.tokens import mint_token

pytestmark = pytest.mark.streams

SECRET = "tenant-admin-secret-long-enough-for-hs256"


def _bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, **claims)}


async def _recv(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while (message := json.loads(await ws.recv()))["type"] != kind:
            pass
    return message


async def _bob(hub: RunningHub, tenant: str) -> websockets.ClientConnection:
    token = mint_token(SECRET, sub="bob", tenant=tenant, channels=["**"])
    ws = await websockets.connect(f"{hub.ws_url}/ws?token={token}")
    subscribed = await _recv(ws, "subscribed")
    assert subscribed["channel"] == f"tenant:{tenant}/client:bob"
    return ws


async def test_a_tenant_admin_reaches_its_tenant_only() -> None:
    async with running_hub(jwt_secret=SECRET) as hub:
        acme_bob, other_bob = await _bob(hub, "acme"), await _bob(hub, "other")
        acme = _bearer(sub="ops", tenant="acme", admin=True)
        async with httpx.AsyncClient(base_url=hub.url, headers=acme) as http:
            listed = (await http.get("/api/v1/connections")).json()["connections"]
            assert [c["tenant"] for c in listed] == ["acme"]
            channels = (await http.get("/api/v1/channels")).json()["channels"]
            assert all(c["channel"].startswith("tenant:acme/") for c in channels)

            sent = await http.post("/api/v1/clients/bob/events", json={"type": "hi", "data": 1})
            assert sent.json()["channel"] == "tenant:acme/client:bob"
            many = await http.post(
                "/api/v1/clients/events", json={"client_ids": ["bob"], "type": "hi", "data": 2}
            )
            assert many.status_code == 201
            for expected in (1, 2):
                assert (await _recv(acme_bob, "event"))["data"]["data"] == expected

            outside = await http.post(
                "/api/v1/clients/bob/subscribe", json={"channel": "tenant:other/x"}
            )
            assert outside.status_code == 403
            inside = await http.post(
                "/api/v1/clients/bob/subscribe", json={"channel": "tenant:acme/x"}
            )
            assert inside.status_code == 202
            assert (await _recv(acme_bob, "subscribed"))["channel"] == "tenant:acme/x"

            gone = await http.post(
                "/api/v1/clients/bob/disconnect", json={"reason": "token_revoked", "revoke": True}
            )
            assert gone.status_code == 202
            assert (await _recv(acme_bob, "disconnect"))["reason"] == "token_revoked"

        # Tenant other's bob heard none of it, and is still connected: a marker arrives.
        admin = _bearer(sub="root", admin=True, publish=["**"])  # an admin of every tenant
        async with httpx.AsyncClient(base_url=hub.url, headers=admin) as http:
            marked = await http.post(
                "/api/v1/publish", json={"channel": "tenant:other/client:bob", "data": "m"}
            )
            assert marked.status_code == 201
            everyone = (await http.get("/api/v1/connections")).json()["connections"]
            assert [c["tenant"] for c in everyone] == ["other"]
        marker = await _recv(other_bob, "event")
        assert marker["data"]["data"] == "m"
        # Acme's bob is revoked; other's bob may still connect.
        refused = mint_token(SECRET, sub="bob", tenant="acme", channels=["**"], extra={"iat": 1})
        async with websockets.connect(f"{hub.ws_url}/ws?token={refused}") as again:
            assert (await _recv(again, "error"))["code"] in ("token_revoked", "unauthorized")
        still = await _bob(hub, "other")
        for ws in (acme_bob, other_bob, still):
            await ws.close()


async def test_a_tenant_admin_reads_the_presence_of_its_tenant_only() -> None:
    """Presence names the clients on a channel: another tenant's is refused, not shown."""
    async with running_hub(jwt_secret=SECRET) as hub:
        acme_bob, other_bob = await _bob(hub, "acme"), await _bob(hub, "other")
        acme = _bearer(sub="ops", tenant="acme", admin=True)
        async with httpx.AsyncClient(base_url=hub.url, headers=acme) as http:
            outside = await http.get("/api/v1/channels/tenant:other/client:bob/presence")
            assert outside.status_code == 403
            assert outside.json()["error"]["code"] == "forbidden"
            assert "clients" not in outside.json()
            inside = await http.get("/api/v1/channels/tenant:acme/client:bob/presence")
            assert inside.status_code == 200
            assert inside.json()["clients"] == ["bob"]
        everyone = _bearer(sub="root", admin=True)  # an admin of every tenant
        async with httpx.AsyncClient(base_url=hub.url, headers=everyone) as http:
            other = await http.get("/api/v1/channels/tenant:other/client:bob/presence")
            assert other.json()["clients"] == ["bob"]
        for ws in (acme_bob, other_bob):
            await ws.close()
