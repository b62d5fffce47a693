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
