"""Streams at the application's own paths (SPEC §8): routes from Python and from the
TOML file, path parameters filling channel templates, `message = "data"`, and resume
through a route, on both stream paths."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from httpx_sse import aconnect_sse
from starlette.applications import Starlette

from tests.servers import running_hub, serving, start_process
from tests.sse_support import next_event
from tidings.auth.tokens import mint_token
from tidings.hub import Hub
from tidings.settings import Settings, SettingsError, load_settings

pytestmark = pytest.mark.streams

ROUTES = [
    {
        "path": "/api/v1/interface/{net_id}/events",
        "transport": "sse",
        "channels": ["network:{net_id}"],
    },
    {"path": "/ws/camera", "transport": "websocket", "channels": ["camera"], "message": "data"},
    {"path": "/ws/net/{net_id}", "transport": "websocket", "channels": ["network:{net_id}"]},
    {"path": "/camera/stream", "transport": "sse", "channels": ["camera"], "message": "data"},
]


async def _publish(http: httpx.AsyncClient, base: str, channel: str, data: Any) -> str:
    response = await http.post(
        base + "/api/v1/publish", json={"channel": channel, "type": "status", "data": data}
    )
    assert response.status_code == 201, response.text
    event_id: str = response.json()["id"]
    return event_id


async def _sse_route_resumes(base: str, hub_base: str) -> None:
    """The SSE route follows network:7; a reconnect with its cursor gets what it missed."""
    url = base + "/api/v1/interface/7/events"
    async with httpx.AsyncClient(timeout=10) as http:
        async with aconnect_sse(http, "GET", url) as source:
            events = source.aiter_sse()
            first_id = await _publish(http, hub_base, "network:7", {"n": 1})
            await _publish(http, hub_base, "network:8", {"n": "other network"})
            first = await next_event(events)
            assert first.event == "status" and json.loads(first.data)["data"] == {"n": 1}
            assert first.id == first_id  # one channel: the cursor is the event id
        missed = await _publish(http, hub_base, "network:7", {"n": 2})
        headers = {"Last-Event-ID": first.id}
        async with aconnect_sse(http, "GET", url, headers=headers) as source:
            again = await next_event(source.aiter_sse())
            assert again.id == missed and json.loads(again.data)["data"] == {"n": 2}
        # A path value that is no channel name: 400 with the hub's error body.
        bad = await http.get(base + "/api/v1/interface/a%20b/events")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_channel"


async def _sse_data_route(base: str, hub_base: str) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_sse(http, "GET", base + "/camera/stream") as source,
    ):
        event_id = await _publish(http, hub_base, "camera", {"label": "cat"})
        frame = await next_event(source.aiter_sse())
        assert (frame.event, frame.id, json.loads(frame.data)) == (
            "status",
            event_id,
            {"label": "cat"},
        )


async def _websocket_routes(ws_base: str, hub_base: str) -> None:
    async with (
        websockets.connect(ws_base + "/ws/camera") as data_only,
        websockets.connect(ws_base + "/ws/net/3") as full,
        httpx.AsyncClient(timeout=10) as http,
    ):
        for ws in (data_only, full):
            assert json.loads(await ws.recv())["type"] == "connected"
            assert json.loads(await ws.recv())["type"] == "subscribed"
        await _publish(http, hub_base, "camera", {"label": "person", "score": 0.9})
        message = json.loads(await asyncio.wait_for(data_only.recv(), 5))
        assert message == {"type": "event", "data": {"label": "person", "score": 0.9}}
        event_id = await _publish(http, hub_base, "network:3", {"up": True})
        message = json.loads(await asyncio.wait_for(full.recv(), 5))
        assert message["type"] == "event" and message["data"]["id"] == event_id
        assert message["data"]["channel"] == "network:3"


async def test_routes_from_settings_on_the_hub_itself() -> None:
    async with running_hub(routes=ROUTES) as served:
        await _sse_route_resumes(served.url, served.url)
        await _sse_data_route(served.url, served.url)
        await _websocket_routes(served.ws_url, served.url)


async def test_routes_from_python_in_the_applications_own_app() -> None:
    hub = Hub(Settings())
    app = Starlette()
    app.mount("/realtime", hub.asgi_app())
    for route in ROUTES:
        make = hub.sse_route if route["transport"] == "sse" else hub.websocket_route
        app.routes.insert(
            0, make(route["path"], channels=route["channels"], message=route.get("message", "full"))
        )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        async with serving(server) as port:
            base = f"http://127.0.0.1:{port}"
            # The app's own routes start the hub on first use; the API is under /realtime.
            await _sse_route_resumes(base, base + "/realtime")
            await _sse_data_route(base, base + "/realtime")
            await _websocket_routes(f"ws://127.0.0.1:{port}", base + "/realtime")
    finally:
        await hub.stop()


async def test_route_authorisation_is_that_of_the_event_stream() -> None:
    secret = "routes-secret-that-is-long-enough-for-hs256"
    async with running_hub(routes=ROUTES, jwt_secret=secret) as served:
        async with httpx.AsyncClient(timeout=10) as http:
            url = served.url + "/api/v1/interface/7/events"
            assert (await http.get(url)).status_code == 401
            other = mint_token(secret, sub="ann", channels=["network:8"])
            refused = await http.get(url, headers={"Authorization": f"Bearer {other}"})
            assert refused.status_code == 403
            assert "network:7" in refused.json()["error"]["message"]
        allowed = mint_token(secret, sub="ann", channels=["network:*"])
        async with websockets.connect(f"{served.ws_url}/ws/net/7?token={allowed}") as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            channels = {json.loads(await ws.recv())["channel"] for _ in range(2)}
            assert channels == {"network:7", "client:ann"}


def test_bad_routes_are_refused_at_start_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text(
        '[[routes]]\npath = "/n/{net_id}"\ntransport = "sse"\nchannels = ["network:{id}"]\n'
    )
    with pytest.raises(SettingsError, match=r"\{id\}, which is not a parameter of the path"):
        load_settings(config_file=config, environ={})
    config.write_text('[[routes]]\npath = "/ws"\ntransport = "websocket"\n')
    with pytest.raises(SettingsError, match="one of the hub's own"):
        load_settings(config_file=config, environ={})


async def test_tidings_serve_reads_routes_from_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    lines = []
    for route in ROUTES:
        lines.append("[[routes]]")
        for key, value in route.items():
            lines.append(f"{key} = {json.dumps(value)}")
    config.write_text("\n".join(lines) + "\n")
    node = start_process("--config", str(config), "--log-level", "warning")
    try:
        await _sse_route_resumes(node.url, node.url)
        await _sse_data_route(node.url, node.url)
        await _websocket_routes(node.url.replace("http", "ws"), node.url)
    finally:
        node.stop()
        node.close()


async def test_backfill_gives_a_fresh_sse_client_the_newest_events_first() -> None:
    """``backfill`` (a route's default, or ``?backfill=``): a client without a resume
    position starts that many events back, then follows live, without a gap or a double."""
    route = {**ROUTES[0], "backfill": 3}
    async with running_hub(routes=[route]) as served, httpx.AsyncClient(timeout=10) as http:
        ids = [await _publish(http, served.url, "network:7", {"n": n}) for n in range(5)]
        async with aconnect_sse(http, "GET", served.url + "/api/v1/interface/7/events") as sse:
            events = sse.aiter_sse()
            got = [await next_event(events) for _ in range(3)]
            assert [e.id for e in got] == ids[2:]
            live = await _publish(http, served.url, "network:7", {"n": 5})
            assert (await next_event(events)).id == live
        # On the hub's own stream, by query; more than history holds gives all of it.
        url = served.url + "/api/v1/events?channel=network:7&backfill=100"
        async with aconnect_sse(http, "GET", url) as sse:
            events = sse.aiter_sse()
            got = [await next_event(events) for _ in range(6)]
            assert [e.id for e in got] == [*ids, live]
        # A resume position wins over backfill; ?backfill=0 turns the route's off.
        headers = {"Last-Event-ID": ids[3]}
        url = served.url + "/api/v1/interface/7/events"
        async with aconnect_sse(http, "GET", url, headers=headers) as sse:
            events = sse.aiter_sse()
            assert [(await next_event(events)).id for _ in range(2)] == [ids[4], live]
        async with aconnect_sse(http, "GET", url + "?backfill=0") as sse:
            events = sse.aiter_sse()
            newest = await _publish(http, served.url, "network:7", {"n": 6})
            assert (await next_event(events)).id == newest
        for bad in ["-1", "x", "10001"]:
            refused = await http.get(url, params={"backfill": bad})
            assert refused.status_code == 400 and "invalid_backfill" in refused.text
