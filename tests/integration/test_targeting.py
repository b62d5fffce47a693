"""Reaching the clients the application chooses (SPEC §8): one event to a list of clients,
and deliver-then-disconnect, over real sockets on both stream paths."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from tests.servers import RunningHub, running_hub
from tests.sse_support import next_event
from tidings.auth.tokens import mint_token

pytestmark = pytest.mark.streams

SECRET = "targeting-secret-that-is-long-enough-for-hs256"
ADMIN = {"Authorization": "Bearer admin-key"}


@pytest.fixture
async def secured() -> AsyncIterator[RunningHub]:
    async with running_hub(jwt_secret=SECRET, api_keys={"ops": "admin-key"}) as running:
        yield running


def _token(sub: str) -> str:
    return mint_token(SECRET, sub=sub, ttl=600, channels=["public:*"])


async def _recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def _ws(served: RunningHub, sub: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"{served.ws_url}/ws?token={_token(sub)}")
    assert (await _recv(ws))["type"] == "connected"
    subscribed = await _recv(ws)
    assert subscribed == {**subscribed, "type": "subscribed", "channel": f"client:{sub}"}
    return ws


async def test_one_event_reaches_each_listed_client(secured: RunningHub) -> None:
    alice, bob, carol = [await _ws(secured, name) for name in ("alice", "bob", "carol")]
    try:
        async with httpx.AsyncClient(base_url=secured.url, headers=ADMIN) as http:
            response = await http.post(
                "/api/v1/clients/events",
                json={"client_ids": ["alice", "bob", "alice"], "type": "area", "data": 7},
            )
            assert response.status_code == 201, response.text
            events = response.json()["events"]
            assert [e["channel"] for e in events] == ["client:alice", "client:bob"]
            for ws in (alice, bob):
                message = await _recv(ws)
                assert message["type"] == "event" and message["data"]["data"] == 7
            # Not listed: nothing for carol.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(carol.recv(), 0.3)
        async with httpx.AsyncClient(base_url=secured.url) as anonymous:
            refused = await anonymous.post(
                "/api/v1/clients/events", json={"client_ids": ["a"], "data": 1}
            )
            assert refused.status_code == 401  # an admin API
    finally:
        for ws in (alice, bob, carol):
            await ws.close()


async def test_websocket_gets_the_event_then_the_disconnect(secured: RunningHub) -> None:
    ws = await _ws(secured, "dave")
    async with httpx.AsyncClient(base_url=secured.url, headers=ADMIN) as http:
        response = await http.post(
            "/api/v1/clients/dave/disconnect",
            json={
                "reason": "token_revoked",
                "revoke": True,
                "event": {"type": "token_revoked", "data": {"why": "password changed"}},
            },
        )
        assert response.status_code == 202, response.text
        stored = response.json()["event"]
    event = await _recv(ws)
    assert event == {"type": "event", "data": stored}
    assert stored["type"] == "token_revoked" and stored["channel"] == "client:dave"
    disconnect = await _recv(ws)
    assert disconnect["type"] == "disconnect" and disconnect["reason"] == "token_revoked"
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4004


async def test_sse_gets_the_event_then_the_disconnect(secured: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
        headers = {"Authorization": f"Bearer {_token('erin')}"}
        url = "/api/v1/events?channel=public:news"
        async with aconnect_sse(http, "GET", url, headers=headers) as source:
            events = source.aiter_sse()
            async with asyncio.timeout(5):
                while (await anext(events)).event != "position":
                    pass
            response = await http.post(
                "/api/v1/clients/erin/disconnect",
                json={"reason": "token_revoked", "event": {"type": "bye", "data": 1}},
                headers=ADMIN,
            )
            assert response.status_code == 202
            first = await next_event(events, skip=())
            assert first.event == "bye" and json.loads(first.data)["channel"] == "client:erin"
            last = await next_event(events)
            assert last.event == "disconnect"
            assert json.loads(last.data)["reason"] == "token_revoked"


# -- server-side subscriptions ---------------------------------------------------------


async def _until(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while (message := await _recv(ws))["type"] != kind:
            pass
    return message


async def _put(http: httpx.AsyncClient, client_id: str, channel: str, on: bool = True) -> None:
    action = "subscribe" if on else "unsubscribe"
    response = await http.post(
        f"/api/v1/clients/{client_id}/{action}", json={"channel": channel}, headers=ADMIN
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"client_id": client_id, "channel": channel, "subscribed": on}


async def test_websocket_client_is_put_on_and_taken_off_a_channel(secured: RunningHub) -> None:
    ws = await _ws(secured, "frank")
    async with httpx.AsyncClient(base_url=secured.url, headers=ADMIN) as http:
        # group:7 is outside the token's own rights (public:*): the server chose it.
        await _put(http, "frank", "group:7")
        subscribed = await _recv(ws)
        assert subscribed["type"] == "subscribed" and subscribed["channel"] == "group:7"
        await http.post("/api/v1/publish", json={"channel": "group:7", "type": "t", "data": 1})
        event = await _recv(ws)
        assert event["type"] == "event" and event["data"]["channel"] == "group:7"

        await _put(http, "frank", "group:7", on=False)
        assert await _recv(ws) == {"type": "unsubscribed", "channel": "group:7", "id": None}
        # After it, group:7 brings nothing: the marker on the personal channel comes first.
        await http.post("/api/v1/publish", json={"channel": "group:7", "type": "t", "data": 2})
        await http.post("/api/v1/clients/frank/events", json={"type": "marker"})
        assert (await _recv(ws))["data"]["type"] == "marker"

        # Not an admin: refused; a bad channel: 400 with the hub's error body.
        refused = await http.post(
            "/api/v1/clients/frank/subscribe",
            json={"channel": "x"},
            headers={"Authorization": f"Bearer {_token('frank')}"},
        )
        assert refused.status_code == 403
        bad = await http.post("/api/v1/clients/frank/subscribe", json={"channel": "a b"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_channel"
    await ws.close()


async def test_refresh_keeps_the_channels_the_server_chose(secured: RunningHub) -> None:
    ws = await _ws(secured, "gina")
    async with httpx.AsyncClient(base_url=secured.url, headers=ADMIN) as http:
        await _put(http, "gina", "group:9")
        assert (await _until(ws, "subscribed"))["channel"] == "group:9"
        await ws.send(json.dumps({"type": "refresh", "token": _token("gina"), "id": 1}))
        assert (await _until(ws, "refreshed"))["id"] == 1
        await http.post("/api/v1/publish", json={"channel": "group:9", "type": "t", "data": 1})
        event = await _recv(ws)
        assert event["type"] == "event" and event["data"]["channel"] == "group:9"
    await ws.close()


async def test_sse_stream_carries_a_server_side_channel_and_resumes_it(
    secured: RunningHub,
) -> None:
    headers = {"Authorization": f"Bearer {_token('hana')}"}
    url = "/api/v1/events?channel=public:news"
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
        async with aconnect_sse(http, "GET", url, headers=headers) as source:
            events = source.aiter_sse()
            async with asyncio.timeout(5):
                while (await anext(events)).event != "position":
                    pass
            await _put(http, "hana", "group:3")
            # No subscribed message on SSE: a position frame gives the new cursor.
            async with asyncio.timeout(5):
                while (position := await anext(events)).event != "position":
                    pass
            assert "group:3;" in position.id and "public:news;" in position.id
            await http.post(
                "/api/v1/publish",
                json={"channel": "group:3", "type": "seen", "data": 0},
                headers=ADMIN,
            )
            first = await next_event(events)
            assert first.event == "seen" and json.loads(first.data)["channel"] == "group:3"
            cursor = first.id
            assert cursor is not None and "group:3;" in cursor and "public:news;" in cursor
        # Missed while away, on the server-side channel: the reconnect gets it back.
        missed = await http.post(
            "/api/v1/publish",
            json={"channel": "group:3", "type": "missed", "data": 1},
            headers=ADMIN,
        )
        assert missed.status_code == 201
        resume = {**headers, "Last-Event-ID": cursor}
        async with aconnect_sse(http, "GET", url, headers=resume) as source:
            event = await next_event(source.aiter_sse(), skip=("probe",))
            assert event.event == "missed" and json.loads(event.data)["id"] == missed.json()["id"]


async def test_automatic_channels_from_claims() -> None:
    templates = ["broadcast", "role:{role}", "tenant:{tenant}/all"]
    async with running_hub(
        jwt_secret=SECRET, api_keys={"ops": "admin-key"}, auto_channels=templates
    ) as served:
        viewer = mint_token(SECRET, sub="ivy", extra={"role": "viewer"})
        ws = await websockets.connect(f"{served.ws_url}/ws?token={viewer}")
        assert (await _recv(ws))["type"] == "connected"
        got = {(await _recv(ws))["channel"] for _ in range(3)}
        assert got == {"client:ivy", "broadcast", "role:viewer"}

        # A tenant's connection joins its tenant's channel, never the global one.
        tenant = mint_token(SECRET, sub="jon", tenant="acme", channels=["**"])
        async with httpx.AsyncClient(base_url=served.url, timeout=10, headers=ADMIN) as http:
            sse_headers = {"Authorization": f"Bearer {tenant}"}
            url = "/api/v1/events?channel=tenant:acme/news"
            async with aconnect_sse(http, "GET", url, headers=sse_headers) as source:
                events = source.aiter_sse()
                async with asyncio.timeout(5):
                    while (await anext(events)).event != "position":
                        pass
                for channel in ("broadcast", "tenant:acme/all"):
                    await http.post(
                        "/api/v1/publish", json={"channel": channel, "type": channel, "data": 0}
                    )
                event = await next_event(events)
                assert event.event == "tenant:acme/all"
            broadcast = await _recv(ws)
            assert broadcast["data"]["channel"] == "broadcast"
        await ws.close()
