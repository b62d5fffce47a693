"""Typed events over real sockets: the validation matrix (HTTP single and batch, WebSocket,
Python), strict types, the event-types endpoint, and the AsyncAPI document validated
against the official AsyncAPI 3.0.0 JSON Schema."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import pytest
import websockets
from fastapi import FastAPI
from pydantic import BaseModel, Field

from tests.servers import HubProcess, running_app, running_hub, start_process
from tidings.hub import Hub, Publication
from tidings.settings import Settings
from tidings.typed import InvalidEventData, UnknownEventType

DATA = Path(__file__).resolve().parents[1] / "data"
SCHEMAS = DATA / "schemas"
GOOD_ONU = {"serial": "ALCL0000BEEF", "olt": "olt-3", "port": 4, "rx_power": -19.5}


class OnuOnline(BaseModel):
    """An ONU came online."""

    serial: str = Field(pattern=r"^[A-Z]{4}[0-9A-F]{8}$")
    olt: str
    port: int = Field(ge=0)
    rx_power: float | None = None


class JobProgress(BaseModel):
    job_id: str
    percent: float = Field(ge=0, le=100)
    state: Literal["queued", "running", "paused", "done", "failed"]


def typed_hub(**settings: Any) -> Hub:
    hub = Hub(Settings(**settings))
    hub.event_type("onu.online", OnuOnline, channels=["olt:*"])
    hub.event_type("job.progress", JobProgress)
    return hub


@functools.cache
def asyncapi_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text())
    return jsonschema.Draft7Validator(schema)


def assert_valid_asyncapi(document: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in asyncapi_validator().iter_errors(document)
    ]
    assert errors == []
    # The official schema does not follow references: every one must lead somewhere.
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, ref
            node = node[part]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_the_official_schema_catches_a_broken_document() -> None:
    # So that "no errors" below means something.
    broken = {"asyncapi": "3.0.0", "info": {"title": "t", "version": "1"}}
    broken["channels"] = {"a": {"address": 5}}
    assert list(asyncapi_validator().iter_errors(broken)) != []


# -- HTTP ----------------------------------------------------------------------------------


async def test_http_publish_is_validated_field_by_field() -> None:
    async with running_hub(typed_hub()) as served, httpx.AsyncClient(base_url=served.url) as http:
        ok = await http.post(
            "/api/v1/publish", json={"channel": "olt:3", "type": "onu.online", "data": GOOD_ONU}
        )
        assert ok.status_code == 201, ok.text
        bad = await http.post(
            "/api/v1/publish",
            json={"channel": "olt:3", "type": "onu.online", "data": {"serial": "x", "port": -1}},
        )
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert error["code"] == "invalid_event"
        assert [e["path"] for e in error["errors"]] == ["/serial", "/olt", "/port"]
        assert all(e["message"] for e in error["errors"])
        assert "onu.online" in error["message"]
        # Outside its channels, and for unregistered types, anything goes.
        for channel, kind in (("lab", "onu.online"), ("olt:3", "free.form")):
            free = await http.post(
                "/api/v1/publish", json={"channel": channel, "type": kind, "data": {"a": 1}}
            )
            assert free.status_code == 201, free.text
        history = (await http.get("/api/v1/channels/olt:3/history")).json()["events"]
        assert [e["type"] for e in history] == ["onu.online", "free.form"]


async def test_a_batch_with_one_bad_event_publishes_none() -> None:
    async with running_hub(typed_hub()) as served, httpx.AsyncClient(base_url=served.url) as http:
        good = {
            "channel": "jobs",
            "type": "job.progress",
            "data": {"job_id": "j1", "percent": 5, "state": "running"},
        }
        bad = {
            "channel": "jobs",
            "type": "job.progress",
            "data": {"job_id": "j1", "percent": 500, "state": "lost"},
        }
        response = await http.post("/api/v1/publish", json={"events": [good, bad, good]})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_event" and error["index"] == 1
        assert [e["path"] for e in error["errors"]] == ["/percent", "/state"]
        assert error["message"].startswith("events[1]: ")
        history = (await http.get("/api/v1/channels/jobs/history")).json()["events"]
        assert history == []
        response = await http.post("/api/v1/publish", json={"events": [good, good]})
        assert response.status_code == 201


async def test_strict_types_refuse_unregistered_types() -> None:
    async with (
        running_hub(typed_hub(strict_types=True)) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        refused = await http.post("/api/v1/publish", json={"channel": "c", "data": 1})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "unknown_event_type"
        elsewhere = await http.post(
            "/api/v1/publish", json={"channel": "lab", "type": "onu.online", "data": GOOD_ONU}
        )
        assert elsewhere.json()["error"]["code"] == "unknown_event_type"
        ok = await http.post(
            "/api/v1/publish", json={"channel": "olt:1", "type": "onu.online", "data": GOOD_ONU}
        )
        assert ok.status_code == 201
        listed = (await http.get("/api/v1/event-types")).json()
        assert listed["strict"] is True


async def test_the_event_types_endpoint_lists_types_channels_and_schemas() -> None:
    async with running_hub(typed_hub()) as served, httpx.AsyncClient(base_url=served.url) as http:
        listed = (await http.get("/api/v1/event-types")).json()
        openapi = (await http.get("/openapi.json")).json()
    assert listed["strict"] is False
    by_type = {t["type"]: t for t in listed["types"]}
    assert set(by_type) == {"onu.online", "job.progress"}
    assert by_type["onu.online"]["channels"] == ["olt:*"]
    assert by_type["onu.online"]["schema"]["required"] == ["serial", "olt", "port"]
    assert "/api/v1/event-types" in openapi["paths"]
    assert "/asyncapi.json" in openapi["paths"]
    assert "FieldErrorOut" in openapi["components"]["schemas"]


# -- WebSocket -----------------------------------------------------------------------------


async def _reply(ws: websockets.ClientConnection, rid: int) -> dict[str, Any]:
    while True:
        message = json.loads(await ws.recv())
        if message.get("id") == rid:
            return message


@pytest.mark.streams
async def test_websocket_publish_is_validated_with_the_same_errors() -> None:
    async with (
        running_hub(typed_hub()) as served,
        websockets.connect(served.ws_url + "/ws?channel=olt:9") as ws,
    ):
        await ws.send(
            json.dumps(
                {
                    "type": "publish",
                    "channel": "olt:9",
                    "event": "onu.online",
                    "data": {**GOOD_ONU, "port": "four", "extra": True},
                    "id": 1,
                }
            )
        )
        error = await _reply(ws, 1)
        assert error["type"] == "error" and error["code"] == "invalid_event"
        assert [e["path"] for e in error["errors"]] == ["/port"]  # extra fields are allowed
        await ws.send(
            json.dumps(
                {
                    "type": "publish",
                    "channel": "olt:9",
                    "event": "onu.online",
                    "data": GOOD_ONU,
                    "id": 2,
                }
            )
        )
        published = await _reply(ws, 2)
        assert published["type"] == "published"
        assert published["event"]["data"] == GOOD_ONU


# -- Python --------------------------------------------------------------------------------


async def test_python_publish_raises_with_the_errors() -> None:
    hub = typed_hub()
    async with hub:
        with pytest.raises(InvalidEventData) as caught:
            await hub.publish("olt:1", "onu.online", {"serial": "ALCL0000BEEF"})
        assert [e["path"] for e in caught.value.errors] == ["/olt", "/port"]
        assert caught.value.index is None
        with pytest.raises(InvalidEventData) as batch:
            await hub.publish_many(
                [
                    Publication(
                        "jobs", "job.progress", {"job_id": "a", "percent": 1, "state": "done"}
                    ),
                    Publication("jobs", "job.progress", {"job_id": "a"}),
                ]
            )
        assert batch.value.index == 1
        assert (await hub.history("jobs")).events == []
        event = await hub.publish("olt:1", "onu.online", GOOD_ONU)
        assert event.data == GOOD_ONU


async def test_python_registration_with_a_json_schema_and_strict() -> None:
    hub = Hub(Settings(strict_types=True))
    hub.event_type("alarm.raised", {"type": "object", "required": ["severity"]})
    async with hub:
        with pytest.raises(UnknownEventType):
            await hub.publish("alarms", "alarm.cleared", {})
        with pytest.raises(InvalidEventData):
            await hub.publish("alarms", "alarm.raised", {})
        await hub.publish("alarms", "alarm.raised", {"severity": "major"})


async def test_an_untyped_hub_asks_nothing() -> None:
    hub = Hub()
    assert hub._typed is None  # the one check publish_many makes
    hub.event_type("x", {})
    assert hub._typed is hub.event_types


# -- AsyncAPI ------------------------------------------------------------------------------


async def test_asyncapi_of_a_hub_without_types() -> None:
    async with running_hub() as served, httpx.AsyncClient(base_url=served.url) as http:
        response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    assert_valid_asyncapi(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["sse"]["host"] == f"127.0.0.1:{served.port}"
    assert document["servers"]["websocket"]["protocol"] == "ws"
    assert document["servers"]["sse"]["protocol"] == "sse"
    messages = document["components"]["messages"]
    for control in ("connected", "subscribed", "unsubscribed", "reset", "disconnect", "error"):
        assert f"control.{control}" in messages
    for control in ("ping", "pong", "result", "refreshed", "subscribe", "publish", "command"):
        assert f"control.{control}" in messages
    assert document["channels"]["events"]["address"] == "{channel}"
    assert {"jwtQuery", "jwtBearer", "apiKey"} <= set(document["components"]["securitySchemes"])
    assert document["servers"]["sse"]["pathname"] == "/api/v1/events"
    assert document["servers"]["websocket"]["pathname"] == "/ws"


async def test_asyncapi_of_a_mounted_hub_names_the_paths_under_its_mount() -> None:
    hub = typed_hub()
    app = FastAPI()
    app.mount("/realtime", hub.asgi_app())
    async with (
        running_app(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        document = (await http.get("/realtime/asyncapi.json")).json()
        servers = document["servers"]
        assert servers["sse"]["pathname"] == "/realtime/api/v1/events"
        assert servers["websocket"]["pathname"] == "/realtime/ws"
        assert_valid_asyncapi(document)
        # Where the document says the stream is, there it is.
        async with http.stream("GET", f"{servers['sse']['pathname']}?channel=x") as stream:
            assert stream.status_code == 200


async def test_asyncapi_of_a_hub_with_pydantic_types() -> None:
    async with (
        running_hub(typed_hub(api_keys={"ops": "k3y"})) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        document = (await http.get("/asyncapi.json")).json()
    assert_valid_asyncapi(document)
    components = document["components"]
    assert components["schemas"]["onu.online"]["required"] == ["serial", "olt", "port"]
    payload = components["messages"]["onu.online"]["payload"]
    assert payload["properties"]["type"]["const"] == "onu.online"
    assert payload["properties"]["data"] == {"$ref": "#/components/schemas/onu.online"}
    patterns = {c["address"] for c in document["channels"].values()}
    assert "olt:*" in patterns
    assert "job.progress" in document["channels"]["events"]["messages"]
    assert document["servers"]["sse"]["security"]  # credentials are configured
    assert {"send.publish", "send.control", "receive.events"} <= set(document["operations"])


def _tidings(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_the_cli_writes_the_asyncapi_of_a_schemas_directory(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    result = _tidings("schema", "asyncapi", "--schemas", str(SCHEMAS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert_valid_asyncapi(document)
    schemas = document["components"]["schemas"]
    assert schemas["job.progress"]["properties"]["steps"]["items"] == {
        "$ref": "#/components/schemas/job.progress.Step"
    }
    assert "job.progress.Step" in schemas
    assert {"olt:*", "tenant:*/onu"} <= {c["address"] for c in document["channels"].values()}
    printed = _tidings("schema", "asyncapi", "--schemas", str(SCHEMAS), "--host", "hub.example:443")
    assert json.loads(printed.stdout)["servers"]["websocket"]["host"] == "hub.example:443"


def test_the_cli_names_a_bad_schema_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"type": "objekt"}')
    for args in (("schema", "typescript"), ("serve", "--port", "0")):
        result = _tidings(*args, "--schemas", str(tmp_path))
        assert result.returncode == 2
        assert "invalid settings" in result.stderr and "broken.json" in result.stderr


def test_serve_validates_with_a_schemas_directory(processes: list[HubProcess]) -> None:
    hub = start_process("--schemas", str(SCHEMAS))
    processes.append(hub)
    refused = httpx.post(
        hub.url + "/api/v1/publish",
        json={"channel": "olt:1", "type": "onu.online", "data": {**GOOD_ONU, "serial": "bad"}},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["errors"][0]["path"] == "/serial"
    document = httpx.get(hub.url + "/asyncapi.json").json()
    assert_valid_asyncapi(document)
    assert {"onu.online", "job.progress"} <= set(document["components"]["messages"])
