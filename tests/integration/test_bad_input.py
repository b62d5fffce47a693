"""Acceptance: bad input, each with its clear error, and the connection or server still
serving others (SPEC §3, §4, §5). Real sockets: a ``websockets`` client, ``httpx``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection

from tests.servers import RunningHub, running_app, running_hub
from tests.sse_support import next_event
from tidings.core.protocol import CloseCode
from tidings.hub import Hub

pytestmark = pytest.mark.streams

WITNESS = "witness"


# -- helpers ---------------------------------------------------------------------------


async def _recv(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(message, dict)
    return message


async def _open_ws(target: RunningHub | str, *channels: str) -> ClientConnection:
    """A WebSocket client subscribed to ``channels``, once the hub confirmed each."""
    base = target if isinstance(target, str) else target.ws_url
    query = "&".join(f"channel={channel}" for channel in channels)
    ws = await websockets.connect(f"{base}/ws?{query}", open_timeout=5)
    assert (await _recv(ws))["type"] == "connected"
    confirmed = {(await _recv(ws))["channel"] for _ in channels}
    assert confirmed == set(channels)
    return ws


async def _publish(http: httpx.AsyncClient, channel: str, data: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/publish", json={"channel": channel, "data": data})
    assert response.status_code == 201, response.text
    stored = response.json()
    assert isinstance(stored, dict)
    return stored


async def _assert_receives(ws: ClientConnection, stored: dict[str, Any]) -> None:
    message = await _recv(ws)
    assert message == {"type": "event", "data": stored}


async def _assert_still_serving(
    running: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    """The client that did nothing wrong still gets events, and new clients are served."""
    stored = await _publish(http, WITNESS, {"still": "serving"})
    await _assert_receives(witness, stored)
    fresh = await _open_ws(running, "fresh")
    try:
        stored = await _publish(http, "fresh", {"fresh": True})
        await _assert_receives(fresh, stored)
    finally:
        await fresh.close()


def _assert_error(
    response: httpx.Response, status: int, code: str, *, message_has: str | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text and 'File "' not in response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    if message_has is not None:
        assert message_has in message


@pytest.fixture
async def http(served: RunningHub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


@pytest.fixture
async def witness(served: RunningHub) -> AsyncIterator[ClientConnection]:
    """A well-behaved client connected before the bad input arrives."""
    ws = await _open_ws(served, WITNESS)
    try:
        yield ws
    finally:
        await ws.close()


# -- WebSocket ---------------------------------------------------------------------------

BAD_MESSAGES = [
    pytest.param("{not json", "invalid_json", None, id="invalid-json"),
    pytest.param(b"\xff\xfe binary garbage", "invalid_json", None, id="binary-garbage"),
    pytest.param("[1, 2, 3]", "invalid_message", None, id="not-an-object"),
    pytest.param({"id": "no-type"}, "missing_field", "no-type", id="missing-type"),
    pytest.param({"type": "frobnicate", "id": 7}, "unknown_type", 7, id="unknown-type"),
    pytest.param({"type": "subscribe", "id": "s-1"}, "missing_field", "s-1", id="missing-channel"),
    pytest.param(
        {"type": "publish", "channel": "demo", "id": 3}, "missing_field", 3, id="missing-data"
    ),
    pytest.param(
        {"type": "subscribe", "channel": "bad channel!", "id": 9},
        "invalid_channel",
        9,
        id="invalid-channel",
    ),
    pytest.param(
        {"type": "subscribe", "channel": "x" * 201, "id": "long"},
        "invalid_channel",
        "long",
        id="channel-too-long",
    ),
    pytest.param(
        {"type": "subscribe", "channel": "demo", "since": 5, "id": 11},
        "invalid_field",
        11,
        id="since-not-a-string",
    ),
    pytest.param(
        {"type": "unsubscribe", "channel": "never-followed", "id": 12},
        "not_subscribed",
        12,
        id="unsubscribe-unknown",
    ),
    pytest.param(
        {"type": "command", "name": "no.such.command", "id": "c"},
        "unknown_command",
        "c",
        id="unknown-command",
    ),
]


@pytest.mark.parametrize(("message", "code", "request_id"), BAD_MESSAGES)
async def test_websocket_bad_message_gets_error_and_connection_stays_open(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    message: str | bytes | dict[str, Any],
    code: str,
    request_id: str | int | None,
) -> None:
    offender = await _open_ws(served, "demo")
    try:
        await offender.send(json.dumps(message) if isinstance(message, dict) else message)
        error = await _recv(offender)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["id"] == request_id
        assert isinstance(error["message"], str) and error["message"]
        assert "Traceback" not in error["message"]

        # The offending connection is still open and still in order: ping -> pong ...
        await offender.send(json.dumps({"type": "ping", "id": "after"}))
        pong = await _recv(offender)
        assert pong["type"] == "pong" and pong["id"] == "after"
        # ... and it still receives its events.
        stored = await _publish(http, "demo", {"after": code})
        await _assert_receives(offender, stored)
        assert len(served.hub.connections) == 2
    finally:
        await offender.close()
    await _assert_still_serving(served, http, witness)


async def test_websocket_many_bad_messages_in_a_row_keep_the_connection(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    offender = await _open_ws(served, "demo")
    try:
        for n in range(50):
            await offender.send(json.dumps({"type": "frobnicate", "id": n}))
        errors = [await _recv(offender) for _ in range(50)]
        assert [(e["type"], e["code"], e["id"]) for e in errors] == [
            ("error", "unknown_type", n) for n in range(50)
        ]
        await offender.send(json.dumps({"type": "ping", "id": "last"}))
        assert (await _recv(offender))["id"] == "last"
    finally:
        await offender.close()
    await _assert_still_serving(served, http, witness)


async def test_websocket_failing_command_handler_leaks_nothing(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    @served.hub.command("explode")
    async def explode(identity: object, args: dict[str, Any]) -> None:
        raise RuntimeError("internal detail /srv/secret.py line 3")

    offender = await _open_ws(served, "demo")
    try:
        await offender.send(json.dumps({"type": "command", "name": "explode", "id": "x"}))
        error = await _recv(offender)
        assert error["type"] == "error" and error["code"] == "command_failed"
        assert error["id"] == "x"
        assert "secret" not in error["message"] and "Traceback" not in error["message"]
        await offender.send(json.dumps({"type": "ping", "id": 1}))
        assert (await _recv(offender))["type"] == "pong"
    finally:
        await offender.close()
    await _assert_still_serving(served, http, witness)


async def _wait_until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    # The hub has no event for "this connection is forgotten"; poll briefly, bounded.
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("size", "binary"),
    [
        pytest.param(64 * 1024 + 1, False, id="64KiB+1-text"),
        pytest.param(1024 * 1024, False, id="1MiB-text"),
        pytest.param(1024 * 1024, True, id="1MiB-binary"),
    ],
)
async def test_websocket_oversized_message_closes_with_1009_only_that_connection(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    size: int,
    binary: bool,
) -> None:
    offender = await _open_ws(served, "demo")
    bystander = await _open_ws(served, "demo")
    try:
        await offender.send(b"x" * size if binary else "x" * size)
        await asyncio.wait_for(offender.wait_closed(), 5)
        assert offender.close_code == CloseCode.MESSAGE_TOO_BIG == 1009
        # The reason docs/protocol.md quotes, on both paths.
        assert re.fullmatch(
            r"(message|frame) (larger than|with \d+ bytes exceeds limit of) \d+ bytes",
            offender.close_reason or "",
        ), offender.close_reason

        # Everyone else is unaffected: same channel, other channel, new clients.
        stored = await _publish(http, "demo", {"after": "oversized"})
        await _assert_receives(bystander, stored)
        await _assert_still_serving(served, http, witness)
        # Only the offender is gone: the witness and the bystander remain.
        await _wait_until(lambda: len(served.hub.connections) == 2)
        assert (await served.hub.presence("demo"))["connections"] == 1
        assert (await served.hub.presence(WITNESS))["connections"] == 1
    finally:
        await offender.close()
        await bystander.close()


async def test_embedded_hub_enforces_its_own_message_limit() -> None:
    """Under a server with a larger frame limit (a user's app), the hub still closes
    a connection that sends more than 64 KiB: ``disconnect`` first, then close 1009."""
    hub = Hub()
    async with running_app(hub.asgi_app()) as port:
        base = f"ws://127.0.0.1:{port}"
        offender = await _open_ws(base, "demo")
        bystander = await _open_ws(base, "demo")
        try:
            await offender.send("x" * (1024 * 1024))
            disconnect = await _recv(offender)
            assert disconnect["type"] == "disconnect"
            assert disconnect["reason"] == "message_too_big"
            assert disconnect["code"] == 1009 and disconnect["reconnect"] is False
            await asyncio.wait_for(offender.wait_closed(), 5)
            assert offender.close_code == 1009
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                stored = await _publish(http, "demo", {"after": "oversized"})
                await _assert_receives(bystander, stored)
        finally:
            await offender.close()
            await bystander.close()


async def test_websocket_too_many_subscriptions() -> None:
    async with running_hub(max_subscriptions=3) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
            ws = await _open_ws(running, "a")
            try:
                for n, channel in enumerate(["b", "c"]):
                    await ws.send(json.dumps({"type": "subscribe", "channel": channel, "id": n}))
                    subscribed = await _recv(ws)
                    assert subscribed["type"] == "subscribed" and subscribed["id"] == n
                await ws.send(json.dumps({"type": "subscribe", "channel": "d", "id": "4th"}))
                error = await _recv(ws)
                assert error["type"] == "error"
                assert error["code"] == "too_many_subscriptions"
                assert error["id"] == "4th"
                assert "3" in error["message"]
                # Re-subscribing to a channel already followed is not a new subscription.
                await ws.send(json.dumps({"type": "subscribe", "channel": "a", "id": "again"}))
                assert (await _recv(ws))["type"] == "subscribed"
                # Still open, still following its three channels, and not "d".
                await ws.send(json.dumps({"type": "ping", "id": "p"}))
                assert (await _recv(ws))["type"] == "pong"
                await _publish(http, "d", {"not": "followed"})
                stored = await _publish(http, "c", {"n": 1})
                await _assert_receives(ws, stored)
                # Unsubscribing frees a slot.
                await ws.send(json.dumps({"type": "unsubscribe", "channel": "b", "id": "u"}))
                assert (await _recv(ws))["type"] == "unsubscribed"
                await ws.send(json.dumps({"type": "subscribe", "channel": "d", "id": "now"}))
                assert (await _recv(ws))["type"] == "subscribed"
            finally:
                await ws.close()


async def test_websocket_too_many_channels_in_the_query_is_refused_clearly() -> None:
    async with running_hub(max_subscriptions=2) as running:
        async with websockets.connect(f"{running.ws_url}/ws?channel=a&channel=b&channel=c") as ws:
            error = await _recv(ws)
            assert error["type"] == "error" and error["code"] == "too_many_subscriptions"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == CloseCode.BAD_REQUEST
        assert running.hub.connections == {}


async def test_websocket_invalid_channel_in_the_query_is_refused_clearly(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    async with websockets.connect(f"{served.ws_url}/ws?channel=bad%20channel") as ws:
        error = await _recv(ws)
        assert error["type"] == "error" and error["code"] == "invalid_channel"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == CloseCode.BAD_REQUEST
    await _assert_still_serving(served, http, witness)


# -- HTTP --------------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


async def test_publish_body_over_the_limit_is_413(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    body = b'{"channel": "demo", "data": "' + b"x" * TEN_MB + b'"}'
    response = await http.post(
        "/api/v1/publish", content=body, headers={"content-type": "application/json"}
    )
    _assert_error(response, 413, "body_too_large")
    await _assert_still_serving(served, http, witness)


async def test_publish_chunked_body_over_the_limit_is_413(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"channel": "demo", "data": "'
        while sent < TEN_MB:
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}'

    request = http.build_request(
        "POST", "/api/v1/publish", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await http.send(request)
    _assert_error(response, 413, "body_too_large")
    assert served.hub.counters.published == 0
    await _assert_still_serving(served, http, witness)


@pytest.mark.parametrize("count", [1001, 10_001])
async def test_publish_batch_over_the_limit_is_413(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection, count: int
) -> None:
    events = [{"channel": "demo", "data": n} for n in range(count)]
    response = await http.post("/api/v1/publish", json={"events": events})
    _assert_error(response, 413, "batch_too_large", message_has="1000")
    history = await http.get("/api/v1/channels/demo/history")
    assert history.json()["events"] == []
    await _assert_still_serving(served, http, witness)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"channel": "demo", "data": ', id="truncated"),
        pytest.param(b"{'channel': 'demo'}", id="single-quotes"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    ],
)
async def test_publish_invalid_json_is_400(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection, body: bytes
) -> None:
    response = await http.post(
        "/api/v1/publish", content=body, headers={"content-type": "application/json"}
    )
    _assert_error(response, 400, "invalid_json")
    await _assert_still_serving(served, http, witness)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param(None, id="no-content-type"),
    ],
)
async def test_publish_non_json_content_type_is_415(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    content_type: str | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await http.post(
        "/api/v1/publish", content=b'{"channel": "demo", "data": 1}', headers=headers
    )
    _assert_error(response, 415, "unsupported_media_type")
    await _assert_still_serving(served, http, witness)


@pytest.mark.parametrize(
    "channel",
    [
        pytest.param("bad channel", id="space"),
        pytest.param("", id="empty"),
        pytest.param("x" * 201, id="too-long"),
        pytest.param("émoji", id="non-ascii"),
        pytest.param("a;b", id="semicolon"),
    ],
)
async def test_publish_invalid_channel_is_400(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection, channel: str
) -> None:
    response = await http.post("/api/v1/publish", json={"channel": channel, "data": 1})
    _assert_error(response, 400, "invalid_channel")
    await _assert_still_serving(served, http, witness)


async def test_batch_with_one_invalid_channel_publishes_nothing(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    events = [{"channel": "demo", "data": 1}, {"channel": "bad channel", "data": 2}]
    response = await http.post("/api/v1/publish", json={"events": events})
    _assert_error(response, 400, "invalid_channel")
    history = await http.get("/api/v1/channels/demo/history")
    assert history.json()["events"] == []
    await _assert_still_serving(served, http, witness)


async def test_publish_event_data_over_64_kib_is_413(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    response = await http.post(
        "/api/v1/publish", json={"channel": "demo", "data": "x" * (64 * 1024)}
    )
    _assert_error(response, 413, "event_too_large")
    # Exactly at the limit is fine: 64 KiB serialised, quotes included.
    response = await http.post(
        "/api/v1/publish", json={"channel": "demo", "data": "x" * (64 * 1024 - 2)}
    )
    assert response.status_code == 201, response.text
    await _assert_still_serving(served, http, witness)


async def test_publish_without_data_names_the_field(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    response = await http.post("/api/v1/publish", json={"channel": "demo"})
    _assert_error(response, 400, "invalid_request", message_has="data")
    response = await http.post("/api/v1/publish", json={"data": 1})
    _assert_error(response, 400, "invalid_request", message_has="channel")
    response = await http.post("/api/v1/publish", json={"events": [{"channel": "demo"}]})
    _assert_error(response, 400, "invalid_request", message_has="data")
    await _assert_still_serving(served, http, witness)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param([1, 2], 400, "invalid_request", id="array-body"),
        pytest.param(
            {"channel": "demo", "data": 1, "extra": 2}, 400, "invalid_request", id="extra"
        ),
        pytest.param({"channel": "demo", "type": "a b", "data": 1}, 400, "invalid_type", id="type"),
        pytest.param({"events": "nope"}, 400, "invalid_request", id="events-not-a-list"),
    ],
)
async def test_publish_other_malformed_bodies_are_400(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    body: Any,
    status: int,
    code: str,
) -> None:
    response = await http.post("/api/v1/publish", json=body)
    _assert_error(response, status, code)
    await _assert_still_serving(served, http, witness)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/api/v1/nope", 404, "not_found", id="unknown-route"),
        pytest.param("GET", "/no/such/page", 404, "not_found", id="unknown-page"),
        pytest.param("DELETE", "/api/v1/publish", 405, "method_not_allowed", id="wrong-method"),
    ],
)
async def test_unknown_route_is_json(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    method: str,
    path: str,
    status: int,
    code: str,
) -> None:
    response = await http.request(method, path)
    _assert_error(response, status, code)
    await _assert_still_serving(served, http, witness)


async def test_history_of_an_invalid_channel_is_400(
    served: RunningHub, http: httpx.AsyncClient, witness: ClientConnection
) -> None:
    response = await http.get("/api/v1/channels/bad%20channel/history")
    _assert_error(response, 400, "invalid_channel")
    response = await http.get("/api/v1/channels/demo/history", params={"limit": "lots"})
    _assert_error(response, 400, "invalid_request", message_has="limit")
    await _assert_still_serving(served, http, witness)


# -- Server-Sent Events ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code"),
    [
        pytest.param("/api/v1/events?channel=bad%20channel", "invalid_channel", id="query"),
        pytest.param(
            "/api/v1/events?channel=demo&channel=bad%3Bone", "invalid_channel", id="second"
        ),
        pytest.param("/api/v1/channels/bad%20channel/events/stream", "invalid_channel", id="path"),
        pytest.param("/api/v1/events", "missing_channel", id="no-channel"),
        pytest.param("/api/v1/events?channel=demo&type=a%20b", "invalid_type", id="bad-type"),
    ],
)
async def test_sse_bad_request_is_json_before_any_stream(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    path: str,
    code: str,
) -> None:
    async with asyncio.timeout(5):
        response = await http.get(path)
    _assert_error(response, 400, code)
    assert "text/event-stream" not in response.headers["content-type"]
    # No stream was opened: the only connection is the witness.
    assert [c.transport for c in served.hub.connections.values()] == ["websocket"]
    await _assert_still_serving(served, http, witness)


_next_sse = next_event


@pytest.mark.parametrize(
    "last_event_id",
    [
        pytest.param("nonsense", id="nonsense"),
        pytest.param("abcdef-5", id="unknown-epoch"),
        pytest.param("demo;zzz-1,other;zzz-2", id="unknown-cursor"),
    ],
)
async def test_sse_unknown_last_event_id_gets_reset_then_live_events(
    served: RunningHub,
    http: httpx.AsyncClient,
    witness: ClientConnection,
    last_event_id: str,
) -> None:
    before = await _publish(http, "demo", {"n": "before"})
    async with aconnect_sse(
        http, "GET", "/api/v1/events?channel=demo", headers={"Last-Event-ID": last_event_id}
    ) as source:
        assert source.response.status_code == 200
        events = source.aiter_sse()
        reset = await _next_sse(events)
        assert reset.event == "reset"
        assert json.loads(reset.data)["channel"] == "demo"
        assert json.loads(reset.data)["reason"] == "history_gap"
        live = await _publish(http, "demo", {"n": "live"})
        frame = await _next_sse(events)
        assert frame.event == "message"
        assert json.loads(frame.data) == live != before
        assert frame.id == live["id"]
    await _assert_still_serving(served, http, witness)
