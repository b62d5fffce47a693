"""Acceptance scenario 3 (SPEC §11): the ISP operations platform in
``examples/isp_platform``, served on a real socket, with real WebSocket and SSE clients.

The React console and its buttons are tested in a browser
(tests/browser/test_example_isp_platform.py); here: typed events, the AsyncAPI and
TypeScript documents, tenants over both transports, the three ways to carry a token, and
who may run which job command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from examples.isp_platform import app as example
from examples.isp_platform.events import CATALOGUE
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from tests.integration.test_typed_events import assert_valid_asyncapi
from tests.servers import running_app
from tests.sse_support import next_event
from tidings.typed import InvalidEventData

ROOT = Path(__file__).resolve().parents[2]
TYPESCRIPT = ROOT / "examples" / "isp_platform" / "isp-events.d.ts"


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with running_app(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http, f"ws://127.0.0.1:{port}"


async def login(http: httpx.AsyncClient, user: str) -> str:
    response = await http.post("/api/login", json={"user": user})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (skipping ``subscribed`` and the like)."""
    while True:
        message = await recv(ws)
        if message["type"] == kind:
            return message


@contextlib.asynccontextmanager
async def follow(ws_base: str, token: str, channel: str) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(f"{ws_base}/realtime/ws?token={token}") as ws:
        assert (await recv(ws))["type"] == "connected"
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        while (await until(ws, "subscribed"))["channel"] != channel:
            pass  # the personal channel, client:<sub>, joined by itself
        yield ws


async def command(ws: ClientConnection, name: str, job_id: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "command", "name": name, "args": {"job_id": job_id}}))
    while True:
        message = await recv(ws)
        if message["type"] in ("result", "error"):
            return message


async def test_a_publisher_helper_refuses_a_payload_its_type_does_not_allow() -> None:
    app = example.create_app(jwt_secret="s" * 32)
    publisher = app.state.publisher
    async with serve(app) as (http, _):
        with pytest.raises(InvalidEventData) as refused:
            await publisher.publish_alert("acme", "a-1", "apocalyptic", "olt-7", "fire")
        assert [e["path"] for e in refused.value.errors] == ["/severity"]
        with pytest.raises(InvalidEventData) as refused:
            await publisher.publish_onu("acme", "onu.online", serial="nope", olt="olt-7")
        assert {e["path"] for e in refused.value.errors} == {"/serial", "/port"}
        with pytest.raises(ValueError, match="family"):
            await publisher.publish_onu("acme", "alert.raised", alert_id="a-2")
        # Nothing refused was stored; a good one is, on its family's tenant channel.
        history = "/realtime/api/v1/channels/tenant:acme/alerts/history"
        admin = {"authorization": f"Bearer {await login(http, 'ana')}"}
        assert (await http.get(history, headers=admin)).json()["events"] == []
        event = await publisher.publish_alert("acme", "a-3", "major", "olt-7", "LOS on port 3")
        assert (event.channel, event.type) == ("tenant:acme/alerts", "alert.raised")
        # Over the app's HTTP API, the hub's field errors reach the caller.
        response = await http.post("/api/alerts", headers=admin, json={"severity": "meh"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_event"
        assert {e["path"] for e in error["errors"]} == {"/severity", "/text"}


async def test_asyncapi_document_is_valid_and_lists_the_24_types() -> None:
    app = example.create_app(jwt_secret="s" * 32)
    async with serve(app) as (http, _):
        response = await http.get("/realtime/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    assert_valid_asyncapi(document)
    assert len(CATALOGUE) == 24
    messages = set(document["components"]["messages"])
    assert {name for name in messages if not name.startswith("control.")} == {
        "event",  # any event of a type the hub does not know (refused here: strict types)
        *CATALOGUE,
    }
    assert {"jwtQuery", "jwtBearer", "jwtCookie"} <= set(document["components"]["securitySchemes"])
    assert document["servers"]["websocket"]["pathname"] == "/realtime/ws"


def test_checked_in_typescript_is_what_the_catalogue_generates() -> None:
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings",
            "schema",
            "typescript",
            "--hub",
            "examples.isp_platform.app:hub",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "export interface AlertRaised" in generated
    assert generated == TYPESCRIPT.read_text(), (
        "examples/isp_platform/isp-events.d.ts is stale: regenerate it with "
        "`tidings schema typescript --hub examples.isp_platform.app:hub "
        "--out examples/isp_platform/isp-events.d.ts`"
    )


async def test_tenants_never_see_each_other_over_websocket_and_sse() -> None:
    app = example.create_app(jwt_secret="s" * 32)
    publisher = app.state.publisher
    async with serve(app) as (http, ws_base):
        ana, gus = await login(http, "ana"), await login(http, "gus")
        async with (
            follow(ws_base, ana, "tenant:acme/alerts") as acme_ws,
            follow(ws_base, gus, "tenant:globex/alerts") as globex_ws,
        ):
            # Asking for the other tenant's channel is refused.
            await globex_ws.send(json.dumps({"type": "subscribe", "channel": "tenant:acme/alerts"}))
            refused = await until(globex_ws, "error")
            assert refused["code"] == "forbidden"
            async with aconnect_sse(
                http, "GET", "/api/tenants/globex/alerts/events", params={"token": gus}
            ) as source:
                assert source.response.status_code == 200
                sse = source.aiter_sse()
                await publisher.publish_alert("acme", "a-1", "critical", "olt-1", "acme down")
                await publisher.publish_alert("globex", "g-1", "minor", "olt-9", "globex slow")
                assert (await until(acme_ws, "event"))["data"]["data"]["alert_id"] == "a-1"
                # Each globex stream's first event is globex's: acme's, published
                # before it, never arrived.
                assert (await until(globex_ws, "event"))["data"]["data"]["alert_id"] == "g-1"
                first = json.loads((await next_event(sse)).data)
                assert (first["channel"], first["data"]["alert_id"]) == (
                    "tenant:globex/alerts",
                    "g-1",
                )
            # The platform's own stream paths refuse another tenant's path.
            response = await http.get(
                "/api/tenants/acme/alerts/events", params={"token": gus}, timeout=5
            )
            assert response.status_code == 403
            # Over WebSocket the refusal is the protocol's: an error, then close 4003.
            async with websockets.connect(f"{ws_base}/ws/tenants/acme/live?token={gus}") as ws:
                assert (await recv(ws))["code"] == "forbidden"
                with pytest.raises(ConnectionClosedError):
                    await recv(ws)
                assert ws.close_code == 4003


@pytest.mark.parametrize("way", ["query", "header", "cookie"])
async def test_token_by_query_header_or_cookie(way: str) -> None:
    app = example.create_app(jwt_secret="s" * 32, job_tick=30)
    async with serve(app) as (http, ws_base):
        token = await login(http, "ana")
        # /api/login also sets the token as the cookie the hub reads; each way on its own.
        assert http.cookies.get("access_token") == token
        http.cookies.clear()
        url = f"{ws_base}/ws/tenants/acme/live"
        headers: dict[str, str] = {}
        if way == "query":
            url += f"?token={token}"
        elif way == "header":
            headers["authorization"] = f"Bearer {token}"
        else:
            headers["cookie"] = f"access_token={token}"
        async with websockets.connect(url, additional_headers=headers) as ws:
            assert (await recv(ws))["type"] == "connected"
            started = await http.post("/api/jobs", headers=headers, params=_query(way, token))
            assert started.status_code == 201, started.text
            event = (await until(ws, "event"))["data"]
            assert (event["channel"], event["type"]) == ("tenant:acme/jobs", "job.started")
            assert event["data"]["job_id"] == started.json()["job_id"]
            # SSE too, and the app's own API.
            auth: dict[str, Any] = {"headers": headers, "params": _query(way, token)}
            sse_url = "/api/tenants/acme/jobs/events"
            async with aconnect_sse(http, "GET", sse_url, **auth) as source:
                assert source.response.status_code == 200
                second = (await http.post("/api/jobs", **auth)).json()
                live = json.loads((await next_event(source.aiter_sse())).data)
                assert (live["type"], live["data"]["job_id"]) == ("job.started", second["job_id"])
            listed = (await http.get("/api/jobs", **auth)).json()["jobs"]
            assert [j["job_id"] for j in listed] == [event["data"]["job_id"], second["job_id"]]
        # And with no token at all, nothing.
        assert (await http.get("/api/tenants/acme/jobs/events")).status_code == 401
        assert (await http.post("/api/jobs", json={})).status_code == 401


def _query(way: str, token: str) -> dict[str, str]:
    return {"token": token} if way == "query" else {}


async def test_job_commands_need_the_claim_and_the_tenant() -> None:
    app = example.create_app(jwt_secret="s" * 32, job_tick=30)
    async with serve(app) as (http, ws_base):
        ana, vic, gus = [await login(http, user) for user in ("ana", "vic", "gus")]
        job = (await http.post("/api/jobs", params={"token": ana}, json={})).json()
        job_id = job["job_id"]
        async with follow(ws_base, ana, "tenant:acme/jobs") as ws:
            assert (await command(ws, "job.pause", job_id))["data"]["state"] == "paused"
            conflict = await command(ws, "job.pause", job_id)
            assert (conflict["type"], conflict["code"]) == ("error", "job_conflict")
            missing = await command(ws, "job.cancel", "job-404")
            assert missing["code"] == "job_not_found"
        # A viewer's token has no `commands`: refused before any job is looked up.
        async with follow(ws_base, vic, "tenant:acme/jobs") as ws:
            assert (await command(ws, "job.cancel", job_id))["code"] == "forbidden"
        # Another tenant's operator may run job commands, but not on acme's jobs, and
        # cannot tell them from jobs that do not exist.
        async with follow(ws_base, gus, "tenant:globex/jobs") as ws:
            assert (await command(ws, "job.cancel", job_id))["code"] == "job_not_found"
        async with follow(ws_base, ana, "tenant:acme/jobs") as ws:
            assert (await command(ws, "job.resume", job_id))["data"]["state"] == "running"
            assert (await command(ws, "job.cancel", job_id))["data"]["state"] == "cancelled"
        listed = (await http.get("/api/jobs", params={"token": ana})).json()["jobs"]
        assert [(j["job_id"], j["state"]) for j in listed] == [(job_id, "cancelled")]
        assert (await http.get("/api/jobs", params={"token": gus})).json()["jobs"] == []
        # What operators saw: only the transitions that happened, in order.
        history = "/realtime/api/v1/channels/tenant:acme/jobs/history"
        events = (await http.get(history, params={"token": ana})).json()["events"]
        assert [e["type"] for e in events] == [
            "job.started",
            "job.paused",
            "job.resumed",
            "job.cancelled",
        ]
        assert [e["data"]["by"] for e in events[1:]] == ["ana", "ana", "ana"]
