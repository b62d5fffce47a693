"""Acceptance: the connect hook decides a connection's channels (SPEC §6, §11 scenario 5).

Every test runs twice: with the hook as a Python callable (``hub.set_connect_hook``) and
as an HTTP URL (setting ``connect_hook``) served by a small Starlette app on its own
port. A supervisor's stream follows exactly the groups the hook returns; a hook that
fails, hangs or answers garbage refuses the connection; ``{"allow": false}`` forbids it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import ServerSentEvent, aconnect_sse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.servers import RunningHub, free_port, running_app, running_hub
from tests.sse_support import next_event
from tidings.auth.tokens import mint_token
from tidings.core.protocol import CloseCode
from tidings.identity import Identity

pytestmark = pytest.mark.streams

SECRET = "connect-hook-test-secret-long-enough-for-hs256"
HOOK_TIMEOUT = 1.0
GROUPS = {"channels": ["group:1", "group:2"], "allowed": ["group:9"]}


def _token(sub: str = "sup-1", **claims: Any) -> str:
    return mint_token(SECRET, sub=sub, ttl=600, **claims)


@dataclass
class HookState:
    """What the hook answers, and what it was asked; shared by both hook forms."""

    form: str
    answer: Any = None
    #: ``answer`` (send ``answer``), ``raise`` (fail; HTTP 500), ``hang`` (until
    #: ``release``), ``text`` (a non-JSON answer), ``deny_status`` (HTTP 403 / Forbidden).
    mode: str = "answer"
    calls: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Hooked:
    running: RunningHub
    state: HookState


def _hook_app(state: HookState) -> Starlette:
    async def hook(request: Request) -> Response:
        state.calls.append(await request.json())
        if state.mode == "raise":
            return PlainTextResponse("hook crashed", status_code=500)
        if state.mode == "hang":
            await state.release.wait()
        if state.mode == "text":
            return PlainTextResponse("yes, let them in")
        if state.mode == "deny_status":
            return PlainTextResponse("no", status_code=403)
        return JSONResponse(state.answer)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def _hook_callable(state: HookState) -> Any:
    async def hook(identity: Identity, request: Mapping[str, Any]) -> Any:
        state.calls.append(
            {
                "client_id": identity.client_id,
                "tenant": identity.tenant,
                "claims": dict(identity.claims),
                **request,
            }
        )
        if state.mode == "raise":
            raise RuntimeError("the permissions database is down")
        if state.mode == "hang":
            await state.release.wait()
        if state.mode == "text":
            return "yes, let them in"
        if state.mode == "deny_status":
            return {"allow": False}
        return state.answer

    return hook


@pytest.fixture(params=["callable", "http"])
async def hooked(request: pytest.FixtureRequest) -> AsyncIterator[Hooked]:
    state = HookState(form=request.param)
    if state.form == "callable":
        async with running_hub(jwt_secret=SECRET, connect_hook_timeout=HOOK_TIMEOUT) as running:
            running.hub.set_connect_hook(_hook_callable(state))
            try:
                yield Hooked(running, state)
            finally:
                state.release.set()
    else:
        async with (
            running_app(_hook_app(state)) as hook_port,
            running_hub(
                jwt_secret=SECRET,
                connect_hook=f"http://127.0.0.1:{hook_port}/hook",
                connect_hook_timeout=HOOK_TIMEOUT,
            ) as running,
        ):
            try:
                yield Hooked(running, state)
            finally:
                state.release.set()  # a hanging hook answers, so its server stops at once


# -- helpers ---------------------------------------------------------------------------


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert isinstance(message, dict)
    return message


async def _until(ws: ClientConnection, kind: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The next message of ``kind``; every message before it is appended to ``seen``."""
    async with asyncio.timeout(5):
        while True:
            message = await _recv(ws)
            if message["type"] == kind:
                return message
            seen.append(message)


_data_frame = next_event


async def _subscribed(events: AsyncIterator[ServerSentEvent]) -> None:
    """Wait for the position frame the hub sends once the subscriptions are made."""
    async with asyncio.timeout(5):
        while (await anext(events)).event != "position":
            pass


def _channels(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["channel"] for m in messages if m["type"] == "event"]


async def _publish_all(hooked: Hooked, *channels: str) -> None:
    for channel in channels:
        await hooked.running.hub.publish(channel, "student_checkin", {"where": channel})


async def _sse_refusal(running: RunningHub, token: str, query: str = "") -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.url, timeout=5) as http:
        response = await http.get(f"/api/v1/events?token={token}{query}")
    assert "text/event-stream" not in response.headers.get("content-type", "")
    return response


async def _ws_refusal(running: RunningHub, token: str) -> tuple[dict[str, Any], int]:
    """The error message a refused WebSocket gets, and the close code that follows."""
    async with websockets.connect(f"{running.ws_url}/ws?token={token}", open_timeout=5) as ws:
        first = await _recv(ws)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return first, closed.value.rcvd.code


def _assert_asked(state: HookState, transport: str, channels: list[str]) -> None:
    assert len(state.calls) == 1
    call = state.calls[0]
    assert call["client_id"] == "sup-1"
    assert call["tenant"] is None
    assert call["claims"]["sub"] == "sup-1"
    assert call["transport"] == transport
    assert call["channels"] == channels


# -- the hook's groups -----------------------------------------------------------------


async def test_sse_follows_exactly_the_groups_the_hook_returns(hooked: Hooked) -> None:
    hooked.state.answer = GROUPS
    # The token's own patterns would allow every group: the hook's answer replaces them.
    token = _token(channels=["group:*"])
    async with (
        httpx.AsyncClient(base_url=hooked.running.url, timeout=5) as http,
        aconnect_sse(http, "GET", f"/api/v1/events?token={token}") as source,
    ):
        assert source.response.status_code == 200
        events = source.aiter_sse()
        await _subscribed(events)
        await _publish_all(hooked, "group:3", "group:9", "group:1", "group:2", "client:sup-1")
        received = [json.loads((await _data_frame(events)).data)["channel"] for _ in range(3)]
        # group:3 and group:9 came first: had they been delivered, they would be here.
        assert received == ["group:1", "group:2", "client:sup-1"]
        assert (await hooked.running.hub.presence("group:1"))["clients"] == ["sup-1"]
        assert (await hooked.running.hub.presence("group:3"))["connections"] == 0
    _assert_asked(hooked.state, "sse", [])


async def test_sse_may_ask_for_allowed_channels_only(hooked: Hooked) -> None:
    hooked.state.answer = GROUPS
    token = _token(channels=["group:*"])
    forbidden = await _sse_refusal(hooked.running, token, "&channel=group:3")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    _assert_asked(hooked.state, "sse", ["group:3"])
    async with (
        httpx.AsyncClient(base_url=hooked.running.url, timeout=5) as http,
        aconnect_sse(http, "GET", f"/api/v1/events?channel=group:9&token={token}") as source,
    ):
        assert source.response.status_code == 200
        events = source.aiter_sse()
        await _subscribed(events)
        await _publish_all(hooked, "group:3", "group:9", "group:1")
        received = [json.loads((await _data_frame(events)).data)["channel"] for _ in range(2)]
        assert received == ["group:9", "group:1"]
    assert hooked.state.calls[1]["channels"] == ["group:9"]


async def test_without_allowed_the_tokens_patterns_still_apply(hooked: Hooked) -> None:
    hooked.state.answer = {"channels": ["group:1"]}
    token = _token(channels=["news"])
    forbidden = await _sse_refusal(hooked.running, token, "&channel=group:2")
    assert forbidden.status_code == 403
    async with (
        httpx.AsyncClient(base_url=hooked.running.url, timeout=5) as http,
        aconnect_sse(http, "GET", f"/api/v1/events?channel=news&token={token}") as source,
    ):
        events = source.aiter_sse()
        await _subscribed(events)
        await _publish_all(hooked, "group:2", "news", "group:1")
        received = [json.loads((await _data_frame(events)).data)["channel"] for _ in range(2)]
        assert received == ["news", "group:1"]


async def test_websocket_follows_the_hooks_groups_and_may_not_leave_them(hooked: Hooked) -> None:
    hooked.state.answer = GROUPS
    token = _token(channels=["group:*"])
    seen: list[dict[str, Any]] = []
    async with websockets.connect(f"{hooked.running.ws_url}/ws?token={token}") as ws:
        connected = await _until(ws, "connected", seen)
        assert connected["client_id"] == "sup-1"
        subscribed = [(await _until(ws, "subscribed", seen))["channel"] for _ in range(3)]
        assert subscribed == ["group:1", "group:2", "client:sup-1"]

        await _publish_all(hooked, "group:3", "group:1")
        await ws.send(json.dumps({"type": "subscribe", "channel": "group:3", "id": "s3"}))
        error = await _until(ws, "error", seen)
        assert (error["code"], error["id"]) == ("forbidden", "s3")
        await ws.send(json.dumps({"type": "subscribe", "channel": "group:9", "id": "s9"}))
        assert (await _until(ws, "subscribed", seen))["id"] == "s9"
        await _publish_all(hooked, "group:9")
        seen.append(await _until(ws, "event", seen))
        assert _channels(seen) == ["group:1", "group:9"]

        # A refreshed token does not widen or narrow what the hook decided.
        fresh = _token(channels=[])
        await ws.send(json.dumps({"type": "refresh", "token": fresh, "id": "r"}))
        assert (await _until(ws, "refreshed", seen))["id"] == "r"
        await ws.send(json.dumps({"type": "subscribe", "channel": "group:3", "id": "s3b"}))
        assert (await _until(ws, "error", seen))["code"] == "forbidden"
        await _publish_all(hooked, "group:2")
        assert (await _until(ws, "event", seen))["data"]["channel"] == "group:2"
        assert not [m for m in seen if m["type"] in ("unsubscribed", "disconnect")]
    _assert_asked(hooked.state, "websocket", [])


async def test_websocket_query_channels_are_checked_against_the_hook(hooked: Hooked) -> None:
    hooked.state.answer = GROUPS
    token = _token(channels=["group:*"])
    async with websockets.connect(
        f"{hooked.running.ws_url}/ws?channel=group:3&token={token}"
    ) as ws:
        refused = await _recv(ws)
        assert refused["type"] == "error"
        assert refused["code"] == "forbidden"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == CloseCode.FORBIDDEN
    _assert_asked(hooked.state, "websocket", ["group:3"])


async def test_a_request_without_credential_never_reaches_the_hook(hooked: Hooked) -> None:
    hooked.state.answer = GROUPS
    async with httpx.AsyncClient(base_url=hooked.running.url, timeout=5) as http:
        response = await http.get("/api/v1/events?channel=group:1")
    assert response.status_code == 401
    assert hooked.state.calls == []


# -- refusals --------------------------------------------------------------------------

FAILURES = {
    "raises": ("raise", None),
    "times_out": ("hang", None),
    "not_json": ("text", None),
    "a_list": ("answer", ["group:1"]),
    "null": ("answer", None),
    "channels_not_a_list": ("answer", {"channels": "group:1"}),
    "invalid_channel": ("answer", {"channels": ["group 1; drop table"]}),
    "allowed_not_strings": ("answer", {"channels": [], "allowed": [1, 2]}),
}


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_a_failing_hook_refuses_the_connection(
    hooked: Hooked, transport: str, failure: str
) -> None:
    hooked.state.mode, hooked.state.answer = FAILURES[failure]
    token = _token(channels=["group:*"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    if transport == "sse":
        response = await _sse_refusal(hooked.running, token, "&channel=group:1")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "connect_hook_failed"
        assert int(response.headers["retry-after"]) >= 1
    else:
        error, code = await _ws_refusal(hooked.running, token)
        assert error["type"] == "error"
        assert error["code"] == "connect_hook_failed"
        assert code == CloseCode.TRY_AGAIN_LATER == 1013
    elapsed = loop.time() - started
    if failure == "times_out":
        assert HOOK_TIMEOUT * 0.9 <= elapsed < HOOK_TIMEOUT + 2
    assert len(hooked.state.calls) == 1
    assert hooked.running.hub.connections == {}


async def test_an_unreachable_hook_url_refuses_the_connection() -> None:
    async with running_hub(
        jwt_secret=SECRET, connect_hook=f"http://127.0.0.1:{free_port()}/hook"
    ) as running:
        response = await _sse_refusal(running, _token(channels=["*"]), "&channel=group:1")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "connect_hook_failed"
        error, code = await _ws_refusal(running, _token(channels=["*"]))
        assert (error["code"], code) == ("connect_hook_failed", 1013)
        assert running.hub.connections == {}


@pytest.mark.parametrize("how", ["allow_false", "status_403"])
@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_a_hook_that_says_no_forbids_the_connection(
    hooked: Hooked, transport: str, how: str
) -> None:
    if how == "allow_false":
        hooked.state.answer = {"allow": False, "reason": "outside the supervisor's hours"}
    else:
        hooked.state.mode = "deny_status"
    token = _token(channels=["group:*"])
    if transport == "sse":
        response = await _sse_refusal(hooked.running, token, "&channel=group:1")
        assert response.status_code == 403
        error = response.json()["error"]
    else:
        error, code = await _ws_refusal(hooked.running, token)
        assert code == CloseCode.FORBIDDEN == 4003
    assert error["code"] == "connect_refused"
    if how == "allow_false":
        assert error["message"] == "outside the supervisor's hours"
    assert len(hooked.state.calls) == 1
    assert hooked.running.hub.connections == {}
