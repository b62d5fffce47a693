"""Commands end to end (SPEC §5, §8): over WebSocket and ``POST /api/v1/commands``, run by
in-process handlers or forwarded to a real little application on its own port, which
checks every request's Standard Webhooks signature with the reference library.

Every case runs over both ways in (``ws``, ``http``) and both stream paths.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import standardwebhooks
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.servers import RunningHub, free_port, running_app, running_hub
from tidings.auth.tokens import mint_token
from tidings.errors import TidingsError
from tidings.identity import Identity

pytestmark = pytest.mark.streams

JWT_SECRET = "commands-test-secret-long-enough-for-hs256"
COMMAND_SECRET = "whsec_Y29tbWFuZHMtdGVzdC1zaWduaW5nLWtleQ=="
TIMEOUT = 0.5
WAYS = ["ws", "http"]


@dataclass
class Application:
    """The application behind ``command_url``: what it was sent, and a gate for slow."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        verifier = standardwebhooks.Webhook(COMMAND_SECRET)

        async def commands(request: Request) -> Response:
            body = await request.body()
            try:
                payload = verifier.verify(body, dict(request.headers))
            except standardwebhooks.WebhookVerificationError:
                return JSONResponse({"error": "bad signature"}, status_code=401)
            self.calls.append(payload)
            self.headers.append(dict(request.headers))
            name, args = payload["name"], payload["args"]
            if name == "app.boom":
                return JSONResponse({"error": "boom"}, status_code=500)
            if name == "app.slow":
                await self.release.wait()
            if name == "app.text":
                return PlainTextResponse("done")
            return JSONResponse({"from": "app", "args": args})

        return Starlette(routes=[Route("/commands", commands, methods=["POST"])])


@dataclass
class Setup:
    running: RunningHub
    application: Application


@pytest.fixture
async def forwarding() -> AsyncIterator[Setup]:
    application = Application()
    async with (
        running_app(application.app()) as port,
        running_hub(
            jwt_secret=JWT_SECRET,
            command_url=f"http://127.0.0.1:{port}/commands",
            command_secret=COMMAND_SECRET,
            command_timeout=TIMEOUT,
        ) as running,
    ):

        @running.hub.command("app.local")
        async def local(identity: Identity, args: dict[str, Any]) -> Any:
            return {"from": "hub", "client_id": identity.client_id, "args": args}

        @running.hub.command("app.busy")
        async def busy(identity: Identity, args: dict[str, Any]) -> Any:
            raise TidingsError("the job is running", code="job_busy")

        @running.hub.command("app.crash")
        async def crash(identity: Identity, args: dict[str, Any]) -> Any:
            raise RuntimeError("/srv/secret.py line 3")

        try:
            yield Setup(running, application)
        finally:
            application.release.set()  # a slow answer ends, so the app stops at once


def _token(commands: list[str] | None = None, **claims: Any) -> str:
    return mint_token(
        JWT_SECRET, sub="op-1", ttl=600, commands=commands or (), tenant="acme", **claims
    )


OPERATOR = _token(["app.*"])


@dataclass
class Outcome:
    """One command's answer, whichever way it came: a result, or an error code."""

    result: Any = None
    code: str | None = None
    message: str = ""
    status: int | None = None  # HTTP only
    connection_id: str | None = None  # WebSocket only


async def _command(
    running: RunningHub,
    way: str,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    token: str | None = OPERATOR,
    connection_id: str | None = None,
) -> Outcome:
    query = f"?token={token}" if token else ""
    if way == "ws":
        async with asyncio.timeout(10):
            async with websockets.connect(f"{running.ws_url}/ws{query}") as ws:
                connected = json.loads(await ws.recv())
                message: dict[str, Any] = {"type": "command", "name": name, "id": "c1"}
                if args is not None:
                    message["args"] = args
                await ws.send(json.dumps(message))
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("id") == "c1":
                        break
        if reply["type"] == "result":
            return Outcome(result=reply["data"], connection_id=connected["connection_id"])
        assert reply["type"] == "error", reply
        return Outcome(code=reply["code"], message=reply["message"])
    headers = {"authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"name": name}
    if args is not None:
        body["args"] = args
    if connection_id is not None:
        body["connection_id"] = connection_id
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        response = await http.post("/api/v1/commands", json=body, headers=headers)
    answer = response.json()
    if response.status_code == 200:
        return Outcome(result=answer["result"], status=200)
    return Outcome(
        code=answer["error"]["code"],
        message=answer["error"]["message"],
        status=response.status_code,
    )


@pytest.mark.parametrize("way", WAYS)
async def test_a_command_is_forwarded_signed_and_its_answer_is_the_result(
    forwarding: Setup, way: str
) -> None:
    outcome = await _command(forwarding.running, way, "app.echo", {"job_id": "j1"})
    assert outcome.code is None, outcome
    assert outcome.result == {"from": "app", "args": {"job_id": "j1"}}
    (call,) = forwarding.application.calls
    assert call == {
        "name": "app.echo",
        "args": {"job_id": "j1"},
        "client_id": "op-1",
        "tenant": "acme",
        "connection_id": outcome.connection_id,
        "request_id": "c1" if way == "ws" else None,
    }
    (headers,) = forwarding.application.headers
    assert headers["webhook-id"].startswith("msg_")
    assert "whsec" not in json.dumps(headers)


@pytest.mark.parametrize("way", WAYS)
async def test_args_default_to_an_empty_object(forwarding: Setup, way: str) -> None:
    outcome = await _command(forwarding.running, way, "app.echo")
    assert outcome.result == {"from": "app", "args": {}}


@pytest.mark.parametrize("way", WAYS)
async def test_an_in_process_handler_takes_precedence(forwarding: Setup, way: str) -> None:
    outcome = await _command(forwarding.running, way, "app.local", {"x": 1})
    assert outcome.result == {"from": "hub", "client_id": "op-1", "args": {"x": 1}}
    assert forwarding.application.calls == []


@pytest.mark.parametrize("way", WAYS)
async def test_a_failing_application_is_command_failed_with_its_message(
    forwarding: Setup, way: str
) -> None:
    outcome = await _command(forwarding.running, way, "app.boom")
    assert (outcome.code, outcome.message) == ("command_failed", "boom")
    assert outcome.status in (None, 502)
    text = await _command(forwarding.running, way, "app.text")
    assert text.code == "command_failed" and "not JSON" in text.message


@pytest.mark.parametrize("way", WAYS)
async def test_a_slow_application_is_command_timeout(forwarding: Setup, way: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await _command(forwarding.running, way, "app.slow")
    assert outcome.code == "command_timeout", outcome
    assert outcome.status in (None, 504)
    assert TIMEOUT <= loop.time() - started < TIMEOUT + 3


@pytest.mark.parametrize("way", WAYS)
async def test_an_unreachable_application_is_command_unavailable(way: str) -> None:
    closed = free_port()  # bound, then closed: nothing listens there
    async with running_hub(command_url=f"http://127.0.0.1:{closed}/commands") as running:
        outcome = await _command(running, way, "app.echo", token=None)
    assert outcome.code == "command_unavailable", outcome
    assert outcome.status in (None, 503)
    assert str(closed) not in outcome.message


@pytest.mark.parametrize("way", WAYS)
async def test_handler_errors(forwarding: Setup, way: str) -> None:
    busy = await _command(forwarding.running, way, "app.busy")
    assert (busy.code, busy.message) == ("job_busy", "the job is running")
    crash = await _command(forwarding.running, way, "app.crash")
    assert (crash.code, crash.message) == ("command_failed", "the command failed")
    assert crash.status in (None, 502)


@pytest.mark.parametrize("way", WAYS)
async def test_the_commands_claim_allows_and_denies(forwarding: Setup, way: str) -> None:
    running = forwarding.running
    denied = await _command(running, way, "other.thing", token=_token(["app.*"]))
    assert denied.code == "forbidden" and "'commands' claim" in denied.message
    assert denied.status in (None, 403)
    none = await _command(running, way, "app.local", token=_token())
    assert none.code == "forbidden"
    exact = await _command(running, way, "app.local", token=_token(["app.local"]))
    assert exact.result is not None and exact.result["from"] == "hub"
    admin = await _command(running, way, "app.local", token=_token(admin=True))
    assert admin.result is not None and admin.result["from"] == "hub"
    assert forwarding.application.calls == []


@pytest.mark.parametrize("way", WAYS)
async def test_open_mode_runs_any_command_and_unknown_ones_are_named(way: str) -> None:
    async with running_hub() as running:

        @running.hub.command("anything.at_all")
        async def anything(identity: Identity, args: dict[str, Any]) -> Any:
            return args

        assert (await _command(running, way, "anything.at_all", {"a": 1}, token=None)).result == {
            "a": 1
        }
        unknown = await _command(running, way, "no.such", token=None)
    assert unknown.code == "unknown_command" and unknown.status in (None, 404)


async def test_http_needs_a_credential_and_a_valid_body(forwarding: Setup) -> None:
    running = forwarding.running
    assert (await _command(running, "http", "app.local", token=None)).status == 401
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        auth = {"authorization": f"Bearer {OPERATOR}"}
        for body in ({"args": {}}, {"name": "app.local", "args": [1]}, {"name": "x", "y": 1}):
            response = await http.post("/api/v1/commands", json=body, headers=auth)
            assert response.status_code == 400, body
            assert response.json()["error"]["code"] == "invalid_request"
        text = await http.post("/api/v1/commands", content=b"name=x", headers=auth)
        assert text.status_code == 415
        cookie = await http.post(
            "/api/v1/commands",
            json={"name": "app.local"},
            headers={"cookie": f"access_token={OPERATOR}"},
        )
        assert cookie.json()["result"]["from"] == "hub"


async def test_http_passes_the_callers_own_connection_on(forwarding: Setup) -> None:
    running = forwarding.running
    async with websockets.connect(f"{running.ws_url}/ws?token={OPERATOR}") as ws:
        connected = json.loads(await asyncio.wait_for(ws.recv(), 5))
        mine = connected["connection_id"]
        outcome = await _command(running, "http", "app.echo", connection_id=mine)
        assert outcome.result is not None
        assert forwarding.application.calls[-1]["connection_id"] == mine
        other = mint_token(JWT_SECRET, sub="someone-else", ttl=600, commands=["app.*"])
        stolen = await _command(running, "http", "app.echo", token=other, connection_id=mine)
        assert (stolen.status, stolen.code) == (403, "connection_mismatch")
        # The same client id in another tenant is another client; an admin of another
        # tenant administers none of acme's connections.
        for claims in ({}, {"admin": True}):
            globex = mint_token(
                JWT_SECRET, sub="op-1", tenant="globex", commands=["app.*"], **claims
            )
            stolen = await _command(running, "http", "app.echo", token=globex, connection_id=mine)
            assert (stolen.status, stolen.code) == (403, "connection_mismatch"), claims
        acme_admin = mint_token(JWT_SECRET, sub="ops", tenant="acme", admin=True)
        administered = await _command(
            running, "http", "app.echo", token=acme_admin, connection_id=mine
        )
        assert administered.result is not None
    assert len(forwarding.application.calls) == 2


async def test_openapi_documents_the_endpoint(served: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/commands"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CommandRequest"}
    assert {"name", "args", "connection_id"} <= set(
        schema["components"]["schemas"]["CommandRequest"]["properties"]
    )
    assert {"200", "403", "404", "502", "503", "504"} <= set(operation["responses"])
