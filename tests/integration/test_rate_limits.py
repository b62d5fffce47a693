"""Acceptance: rate limits and connection limits, each with its named error (SPEC §6).

New stream connections are limited per IP per minute, publishes per client per second;
over a limit, HTTP answers 429 with ``Retry-After`` and WebSocket an ``error`` (then, for
a refused connection, close code 4029). Where the window is a minute, the hub's limiter
is swapped for one with a clock the test moves, so recovery is checked without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.servers import RunningHub, running_hub
from tidings.auth.tokens import mint_token
from tidings.connection import Connection
from tidings.core.protocol import CloseCode
from tidings.ratelimit import RateLimiter

pytestmark = pytest.mark.streams

SECRET = "rate-limit-test-secret-long-enough-for-hs256"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(sub: str) -> str:
    return mint_token(SECRET, sub=sub, ttl=600, channels=["news"], publish=["news"])


def _bearer(sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(sub)}"}


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert isinstance(message, dict)
    return message


async def _sse(running: RunningHub, query: str = "") -> tuple[int, dict[str, Any], httpx.Headers]:
    """Open an SSE stream and close it at once: the status, JSON error body and headers."""
    async with (
        httpx.AsyncClient(base_url=running.url, timeout=5) as http,
        http.stream("GET", f"/api/v1/events?channel=news{query}") as response,
    ):
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            return 200, {}, response.headers
        body = json.loads(await response.aread())
        return response.status_code, body["error"], response.headers


async def _ws(running: RunningHub, query: str = "") -> tuple[dict[str, Any], int | None]:
    """Open a WebSocket: its first message, and the close code if it was refused."""
    async with websockets.connect(f"{running.ws_url}/ws?channel=news{query}") as ws:
        first = await _recv(ws)
        if first["type"] == "connected":
            return first, None
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("a refused WebSocket must be closed after its error")
    assert ws.close_code is not None
    return first, ws.close_code


def _retry_after(headers: httpx.Headers) -> int:
    value = int(headers["retry-after"])
    assert value >= 1
    return value


# -- new connections per IP per minute ---------------------------------------------------


async def test_sixth_sse_connection_in_a_minute_is_rate_limited() -> None:
    async with running_hub(connection_rate=5) as running:
        for _ in range(5):
            assert (await _sse(running))[0] == 200
        status, error, headers = await _sse(running)
        assert status == 429
        assert error["code"] == "rate_limited"
        assert "connection_rate" in error["message"]  # the cause can be found
        # One new connection every 12 s (5 per minute) is the refill rate.
        assert 11 <= _retry_after(headers) <= 12
        assert running.hub.connections == {}
        # The limit is per IP, for every stream transport: WebSocket is refused as well.
        refused, code = await _ws(running)
        assert (refused["type"], refused["code"], code) == ("error", "rate_limited", 4029)


async def test_sixth_websocket_connection_in_a_minute_is_rate_limited() -> None:
    async with running_hub(connection_rate=5) as running:
        for _ in range(5):
            first, code = await _ws(running)
            assert (first["type"], code) == ("connected", None)
        error, code = await _ws(running)
        assert error["type"] == "error"
        assert error["code"] == "rate_limited"
        assert code == CloseCode.RATE_LIMITED == 4029
        status, body, _ = await _sse(running)
        assert (status, body["code"]) == (429, "rate_limited")


async def test_connection_rate_recovers_after_the_advertised_wait() -> None:
    clock = FakeClock()
    async with running_hub(connection_rate=5) as running:
        running.hub.gate.connection_limiter = RateLimiter(5, 60, clock=clock)
        for _ in range(5):
            assert (await _sse(running))[0] == 200
        status, _, headers = await _sse(running)
        assert (status, _retry_after(headers)) == (429, 12)
        clock.now += 10.6  # 1.4 s short of the next connection
        status, _, headers = await _sse(running)
        assert status == 429
        wait = _retry_after(headers)
        assert wait == 2  # rounded up: retrying after Retry-After seconds must succeed
        clock.now += wait
        assert (await _sse(running))[0] == 200
        assert (await _sse(running))[0] == 429
        clock.now += 60  # a quiet minute gives the full burst back, and no more
        outcomes = [(await _ws(running))[1] for _ in range(6)]
        assert outcomes == [None] * 5 + [4029]


async def test_the_connection_rate_is_per_ip_address() -> None:
    async with running_hub(connection_rate=1) as running:
        assert (await _sse(running))[0] == 200  # from 127.0.0.1
        assert (await _sse(running))[0] == 429
        # Another address (all of 127/8 is loopback on Linux) still has its own burst.
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with (
            httpx.AsyncClient(base_url=running.url, transport=transport, timeout=5) as http,
            http.stream("GET", "/api/v1/events?channel=news") as response,
        ):
            assert response.status_code == 200
            (connection,) = running.hub.connections.values()
            assert connection.remote is not None and connection.remote.startswith("127.0.0.2:")
        async with websockets.connect(
            f"{running.ws_url}/ws?channel=news", local_addr=("127.0.0.3", 0)
        ) as ws:
            assert (await _recv(ws))["type"] == "connected"


# -- publishes per client per second -----------------------------------------------------


async def test_http_publishes_per_client_are_limited_with_retry_after() -> None:
    clock = FakeClock()
    async with (
        running_hub(jwt_secret=SECRET, publish_rate=5) as running,
        httpx.AsyncClient(base_url=running.url, timeout=5) as http,
    ):
        running.hub.gate.publish_limiter = RateLimiter(5, 1, clock=clock)
        body = {"channel": "news", "data": 1}
        for _ in range(5):
            response = await http.post("/api/v1/publish", json=body, headers=_bearer("alice"))
            assert response.status_code == 201
        limited = await http.post("/api/v1/publish", json=body, headers=_bearer("alice"))
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert _retry_after(limited.headers) == 1
        # The limit is per client: bob is not slowed down by alice.
        other = await http.post("/api/v1/publish", json=body, headers=_bearer("bob"))
        assert other.status_code == 201
        # A batch counts as one publish, and is refused as a whole.
        batch = {"events": [body, body]}
        refused = await http.post("/api/v1/publish", json=batch, headers=_bearer("alice"))
        assert refused.status_code == 429
        clock.now += 0.2
        response = await http.post("/api/v1/publish", json=batch, headers=_bearer("alice"))
        assert response.status_code == 201
        assert len(response.json()["events"]) == 2
        history = await running.hub.history("news")
        assert len(history.events) == 5 + 1 + 2


async def test_the_same_client_id_in_two_tenants_has_two_buckets() -> None:
    async with (
        running_hub(jwt_secret=SECRET, publish_rate=2) as running,
        httpx.AsyncClient(base_url=running.url, timeout=5) as http,
    ):
        running.hub.gate.publish_limiter = RateLimiter(2, 1, clock=FakeClock())

        def bearer(tenant: str) -> dict[str, str]:
            token = mint_token(
                SECRET, sub="bob", tenant=tenant, channels=["**"], publish=["**"], ttl=600
            )
            return {"Authorization": f"Bearer {token}"}

        def body(tenant: str) -> dict[str, Any]:
            return {"channel": f"tenant:{tenant}/news", "data": 1}

        for _ in range(2):
            answer = await http.post("/api/v1/publish", json=body("acme"), headers=bearer("acme"))
            assert answer.status_code == 201
        spent = await http.post("/api/v1/publish", json=body("acme"), headers=bearer("acme"))
        assert spent.status_code == 429
        # Tenant other's bob is another client: acme's bob used nothing of his.
        other = await http.post("/api/v1/publish", json=body("other"), headers=bearer("other"))
        assert other.status_code == 201


async def test_publish_rate_recovers_in_real_time() -> None:
    async with (
        running_hub(jwt_secret=SECRET, publish_rate=5) as running,
        httpx.AsyncClient(base_url=running.url, timeout=5) as http,
    ):
        body = {"channel": "news", "data": 1}
        statuses = []
        for _ in range(30):  # 5 per second: refused long before 30, however slow the host
            response = await http.post("/api/v1/publish", json=body, headers=_bearer("alice"))
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[:5] == [201] * 5
        assert statuses[-1] == 429
        await asyncio.sleep(_retry_after(response.headers))
        again = await http.post("/api/v1/publish", json=body, headers=_bearer("alice"))
        assert again.status_code == 201


async def test_websocket_publishes_are_limited_per_client() -> None:
    clock = FakeClock()
    async with running_hub(jwt_secret=SECRET, publish_rate=5) as running:
        running.hub.gate.publish_limiter = RateLimiter(5, 1, clock=clock)
        url = f"{running.ws_url}/ws?token={_token('alice')}"
        async with websockets.connect(url) as ws, websockets.connect(url) as second:
            assert (await _recv(ws))["type"] == "connected"
            assert (await _recv(second))["type"] == "connected"
            for n in range(6):
                publish = {"type": "publish", "channel": "news", "data": n, "id": n}
                await ws.send(json.dumps(publish))
            replies = []
            while len(replies) < 6:
                message = await _recv(ws)
                if message["type"] in ("published", "error"):
                    replies.append(message)
            assert [r["type"] for r in replies] == ["published"] * 5 + ["error"]
            assert (replies[-1]["code"], replies[-1]["id"]) == ("rate_limited", 5)
            # Same client, another connection: the same budget.
            await second.send(json.dumps({**publish, "id": "other"}))
            while (message := await _recv(second))["type"] != "error":
                pass
            assert (message["code"], message["id"]) == ("rate_limited", "other")
            # The connection stays open and publishes again once the bucket refills.
            clock.now += 0.2
            await ws.send(json.dumps({**publish, "id": "later"}))
            while (message := await _recv(ws))["type"] != "published":
                assert message["type"] != "error", message
            assert message["id"] == "later"


# -- connection limits -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _held_ws(running: RunningHub, query: str = "") -> AsyncIterator[ClientConnection]:
    async with websockets.connect(f"{running.ws_url}/ws?channel=news{query}") as ws:
        assert (await _recv(ws))["type"] == "connected"
        yield ws


@contextlib.asynccontextmanager
async def _held_sse(running: RunningHub, query: str = "") -> AsyncIterator[httpx.Response]:
    async with (
        httpx.AsyncClient(base_url=running.url, timeout=5) as http,
        http.stream("GET", f"/api/v1/events?channel=news{query}") as response,
    ):
        assert response.status_code == 200
        yield response


async def test_max_connections_refuses_with_too_many_connections() -> None:
    async with running_hub(max_connections=2) as running:
        closed = asyncio.Event()
        running.hub.on_disconnect(lambda connection: closed.set())
        async with _held_sse(running), _held_ws(running) as ws:
            status, error, headers = await _sse(running)
            assert (status, error["code"]) == (429, "too_many_connections")
            _retry_after(headers)
            refused, code = await _ws(running)
            assert (refused["code"], code) == ("too_many_connections", CloseCode.RATE_LIMITED)
            assert len(running.hub.connections) == 2
            await ws.close()
            await asyncio.wait_for(closed.wait(), 5)
            # A freed slot is usable at once.
            async with _held_ws(running):
                assert len(running.hub.connections) == 2


async def test_max_connections_per_client_counts_one_clients_streams() -> None:
    async with running_hub(jwt_secret=SECRET, max_connections_per_client=2) as running:
        alice, bob = f"&token={_token('alice')}", f"&token={_token('bob')}"
        alice_left = asyncio.Event()

        def on_disconnect(connection: Connection) -> None:
            if connection.client_id == "alice":
                alice_left.set()

        running.hub.on_disconnect(on_disconnect)
        async with _held_sse(running, alice), _held_ws(running, alice) as ws:
            status, error, headers = await _sse(running, alice)
            assert (status, error["code"]) == (429, "too_many_connections")
            _retry_after(headers)
            refused, code = await _ws(running, alice)
            assert (refused["code"], code) == ("too_many_connections", 4029)
            # Another client is not affected.
            async with _held_ws(running, bob), _held_sse(running, bob):
                clients = sorted(c.client_id or "" for c in running.hub.connections.values())
                assert clients == ["alice", "alice", "bob", "bob"]
            assert not alice_left.is_set()
            await ws.close()
            await asyncio.wait_for(alice_left.wait(), 5)
            async with _held_ws(running, alice):  # the freed slot is alice's again
                assert len(running.hub.connections) == 2


async def test_connection_rate_zero_is_no_limit() -> None:
    # A load test of thousands of clients from one machine must be possible (#12.12).
    async with running_hub(connection_rate=0) as running:
        for _ in range(20):
            assert (await _sse(running))[0] == 200
