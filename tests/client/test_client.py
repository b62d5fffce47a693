"""The async and sync clients against real hubs on free ports."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.servers import RunningHub, free_port, running_hub
from tidings.auth.tokens import mint_token
from tidings.bench.chaos_proxy import Proxy
from tidings.client import (
    Backoff,
    Client,
    ClientError,
    ConnectionFailed,
    Event,
    Handle,
    Reset,
    Status,
    StatusChange,
)
from tidings.client.sync import SyncClient, subscribe

pytestmark = pytest.mark.streams

TRANSPORTS = ["websocket", "sse"]
SECRET = "test-secret-that-is-long-enough-for-hs256!"
API_KEY = "key-for-the-admin-service-0123456789"
FAST = Backoff(initial=0.01, factor=2.0, max=0.2, jitter=0.5, attempts=20)


@pytest.fixture
async def secured() -> AsyncIterator[RunningHub]:
    async with running_hub(jwt_secret=SECRET, api_keys={"admin": API_KEY}) as running:
        yield running


class Statuses:
    """An ``on_status`` callback that keeps every change and can be waited on."""

    def __init__(self) -> None:
        self.changes: list[StatusChange] = []
        self._seen: dict[Status, asyncio.Event] = {status: asyncio.Event() for status in Status}

    def __call__(self, change: StatusChange) -> None:
        self.changes.append(change)
        self._seen[change.status].set()

    async def reached(self, status: Status, within: float = 10) -> None:
        await asyncio.wait_for(self._seen[status].wait(), within)

    def reasons(self, status: Status) -> list[str | None]:
        return [change.reason for change in self.changes if change.status is status]


def _token(sub: str = "bob", **claims: Any) -> str:
    return mint_token(SECRET, sub=sub, channels=["*"], publish=["*"], **claims)


async def _admin(running: RunningHub, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        return await http.post(path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})


async def _next(iterator: Any, within: float = 5) -> Any:
    async with asyncio.timeout(within):
        return await iterator.__anext__()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscribe_publish_and_type_filters(served: RunningHub, transport: str) -> None:
    statuses: list[StatusChange] = []
    async with Client(served.url, transport=transport, on_status=statuses.append) as client:
        everything = client.subscribe("alerts")
        disks = client.subscribe("alerts", types=["disk_full"])
        await everything.ready()
        await disks.ready()
        first = await client.publish("alerts", "cpu_hot", {"n": 1})
        second = await client.publish("alerts", "disk_full", {"n": 2})
        assert isinstance(first, Event) and first.channel == "alerts"
        assert [await _next(everything), await _next(everything)] == [first, second]
        assert await _next(disks) == second
        await disks.close()
        with pytest.raises(StopAsyncIteration):
            await _next(disks)
    assert statuses[0].status is Status.CONNECTING
    assert Status.CONNECTED in [s.status for s in statuses]
    assert statuses[-1].status is Status.CLOSED
    assert [e async for e in everything] == []  # ended by close


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_handlers_per_type_and_wildcard(served: RunningHub, transport: str) -> None:
    seen: list[tuple[str, str]] = []
    done = asyncio.Event()

    async def on_any(event: Event) -> None:
        seen.append(("*", event.type))
        if len(seen) == 3:
            done.set()

    async with Client(served.url, transport=transport) as client:
        handle = client.on("alerts", "*", on_any)

        @client.on("alerts", "disk_full")
        def on_disk(event: Event) -> None:
            seen.append(("disk_full", event.type))
            if len(seen) == 3:
                done.set()

        await handle.ready()
        for other in client._consumers["alerts"]:
            if isinstance(other, Handle):
                await other.ready()
        await client.publish("alerts", "cpu_hot", None)
        await client.publish("alerts", "disk_full", None)
        async with asyncio.timeout(5):
            await done.wait()
        await handle.remove()
        assert len(client._consumers["alerts"]) == 1
    assert sorted(seen) == [("*", "cpu_hot"), ("*", "disk_full"), ("disk_full", "disk_full")]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reset_is_raised_then_iteration_continues(transport: str) -> None:
    async with running_hub(history_size=3) as hub:
        async with Client(hub.url, transport=transport) as client:
            sub = client.subscribe("alerts")
            await sub.ready()
            first = await client.publish("alerts", "m", 0)
            assert await _next(sub) == first
        # Disconnected long enough for history to move past the position.
        async with httpx.AsyncClient(base_url=hub.url) as http:
            for n in range(1, 8):
                await http.post("/api/v1/publish", json={"channel": "alerts", "data": n})
        since = first.id
        async with Client(hub.url, transport=transport) as client:
            sub = client.subscribe("alerts", since=since)
            with pytest.raises(Reset) as caught:
                await _next(sub)
            assert caught.value.channel == "alerts" and caught.value.reason == "history_gap"
            live = await client.publish("alerts", "m", 8)
            assert await _next(sub) == live


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_on_reset_callback_receives_resets_instead(transport: str) -> None:
    async with running_hub(history_size=2) as hub:
        resets: list[Reset] = []
        async with Client(hub.url, transport=transport, on_reset=resets.append) as client:
            sub = client.subscribe("alerts", since="000000-1")  # from another epoch
            await sub.ready()
            live = await client.publish("alerts", "m", 1)
            assert await _next(sub) == live
        assert [r.reason for r in resets] == ["history_gap"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_revoke_ends_in_failed_with_the_reason(secured: RunningHub, transport: str) -> None:
    statuses = Statuses()
    async with Client(
        secured.url, token=_token(), transport=transport, backoff=FAST, on_status=statuses
    ) as client:
        sub = client.subscribe("alerts")
        await sub.ready()
        response = await _admin(
            secured, "/api/v1/clients/bob/disconnect", {"reason": "token_revoked", "revoke": True}
        )
        assert response.status_code == 202
        with pytest.raises(ConnectionFailed) as caught:
            await _next(sub)
        assert caught.value.reason == "token_revoked"
        await statuses.reached(Status.FAILED)
    assert statuses.reasons(Status.FAILED) == ["token_revoked"]
    assert statuses.reasons(Status.RECONNECTING) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_credentials_fail_without_retrying(
    secured: RunningHub, transport: str
) -> None:
    async with Client(secured.url, token="not-a-token", transport=transport, backoff=FAST) as c:
        with pytest.raises(ConnectionFailed) as caught:
            await _next(c.subscribe("alerts"))
        assert caught.value.reason == "invalid_token"
        assert c.status is Status.FAILED


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_forbidden_channel_ends_its_iterator(secured: RunningHub, transport: str) -> None:
    token = mint_token(SECRET, sub="bob", channels=["public/*"])
    async with Client(secured.url, token=token, transport=transport, backoff=FAST) as client:
        allowed = client.subscribe("public/news")
        await allowed.ready()
        with pytest.raises(ClientError) as caught:
            await _next(client.subscribe("secret"))
        assert "forbidden" in str(caught.value)
        with pytest.raises(ValueError, match="channel"):
            client.subscribe("bad name")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_provider_is_called_again_on_every_reconnect(
    secured: RunningHub, transport: str
) -> None:
    issued: list[str] = []
    called = asyncio.Event()

    async def provider() -> str:
        issued.append(_token(jti=f"t{len(issued)}"))
        called.set()
        return issued[-1]

    async with Client(secured.url, token=provider, transport=transport, backoff=FAST) as client:
        sub = client.subscribe("alerts")
        await sub.ready()
        before = len(issued)
        called.clear()
        # "reconnect" (4010) asks clients to come back.
        response = await _admin(secured, "/api/v1/clients/bob/disconnect", {"reason": "reconnect"})
        assert response.status_code == 202
        await asyncio.wait_for(called.wait(), 5)  # asked again for the reconnect
        event = await client.publish("alerts", "m", "after")
        assert await _next(sub) == event
    assert len(issued) > before


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connections_dropped_before_the_handshake_are_retried(
    served: RunningHub, transport: str
) -> None:
    # A proxy whose upstream is down accepts and drops at once: the client sees the
    # connection fail at any step of the handshake (websockets raises InvalidMessage or
    # ConnectionClosedError, depending on timing). Every one must lead to another attempt.
    proxy = Proxy(free_port())
    await proxy.start()
    failures = 0
    enough = asyncio.Event()

    def status(change: StatusChange) -> None:
        nonlocal failures
        if change.status is Status.RECONNECTING:
            failures += 1
            if failures >= 60:
                enough.set()

    fast = Backoff(initial=0.0, jitter=0.0, attempts=None)
    url = f"http://127.0.0.1:{proxy.port}"
    try:
        async with Client(url, transport=transport, backoff=fast, on_status=status) as client:
            sub = client.subscribe("alerts")
            await asyncio.wait_for(enough.wait(), 20)
            proxy.upstream = served.port
            await sub.ready(timeout=10)
            async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
                await http.post("/api/v1/publish", json={"channel": "alerts", "data": 1})
            assert (await _next(sub)).data == 1
    finally:
        await proxy.close()


async def test_a_failure_nobody_foresaw_does_not_end_the_reconnect_loop() -> None:
    # A peer that is not a hub (or a broken proxy) answers the first connection with a
    # message that is not JSON. The attempt fails; the client must try again, not sit in
    # "reconnecting" for ever with its loop gone.
    from websockets.asyncio.server import ServerConnection, serve

    attempts = 0

    async def peer(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await ws.send("not json" if attempts == 1 else '{"type": "connected"}')
        await ws.wait_closed()

    statuses = Statuses()
    async with serve(peer, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        fast = Backoff(initial=0.0, jitter=0.0, attempts=None)
        async with Client(f"ws://127.0.0.1:{port}", backoff=fast, on_status=statuses):
            await statuses.reached(Status.CONNECTED)
    assert statuses.reasons(Status.RECONNECTING) == ["unexpected: JSONDecodeError"]
    assert attempts == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_token_refused_as_expired_is_minted_again(
    secured: RunningHub, transport: str
) -> None:
    # The provider hands out a token that has lapsed (beyond the hub's leeway) twice;
    # the hub refuses it with token_expired, and a provider can do better next time.
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return _token(ttl=-60) if calls <= 2 else _token()

    async with Client(secured.url, token=provider, transport=transport, backoff=FAST) as client:
        sub = client.subscribe("alerts")
        await sub.ready()
        event = await client.publish("alerts", "m", "fresh")
        assert await _next(sub) == event
    assert calls >= 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_fixed_expired_token_fails_at_once(secured: RunningHub, transport: str) -> None:
    statuses = Statuses()
    expired = _token(ttl=-60)
    async with Client(
        secured.url, token=expired, transport=transport, backoff=FAST, on_status=statuses
    ) as client:
        sub = client.subscribe("alerts")
        with pytest.raises(ConnectionFailed, match="token_expired"):
            await _next(sub)
    assert statuses.reasons(Status.RECONNECTING) == []


async def test_a_request_whose_send_fails_raises_connection_lost_and_nothing_leaks() -> None:
    # The connection goes while a request's send() waits: the reader fails the pending
    # reply first, then send() raises. The caller gets RequestError, and the loop must not
    # report a future whose exception nobody retrieved.
    from websockets.exceptions import ConnectionClosedError

    from tidings.client.client import _WebSocketLink
    from tidings.client.errors import RequestError

    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    async with Client("http://127.0.0.1:9") as client:
        link = _WebSocketLink(client)

        class Dropped:
            async def send(self, text: str) -> None:
                for future in link._pending.values():
                    future.set_exception(RequestError("connection_lost", "lost"))
                raise ConnectionClosedError(None, None)

        failed = asyncio.Event()

        class Stuck:
            """The reader fails the reply; the send never returns and is cancelled."""

            async def send(self, text: str) -> None:
                for future in link._pending.values():
                    future.set_exception(RequestError("connection_lost", "lost"))
                failed.set()
                await asyncio.Event().wait()

        link.session.open = True
        link._open.set()
        link._ws = Dropped()
        with pytest.raises(RequestError, match="connection_lost"):
            await link.request({"type": "ping"})
        link._ws = Stuck()
        pinger = asyncio.ensure_future(link.request({"type": "ping"}))
        await asyncio.wait_for(failed.wait(), 5)
        pinger.cancel()  # as the pinger is when its connection ends
        with pytest.raises(asyncio.CancelledError):
            await pinger
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert unretrieved == []


async def test_latency_is_measured_from_ping_pong(served: RunningHub) -> None:
    async with Client(served.url) as client:
        assert client.latency is None
        rtt = await client.ping()
        assert 0 < rtt < 5 and client.latency == rtt


async def test_websocket_refreshes_a_jwt_before_it_expires(secured: RunningHub) -> None:
    tokens: list[str] = []
    refreshed = asyncio.Event()

    def provider() -> str:
        tokens.append(_token(ttl=2 if not tokens else 3600, jti=f"r{len(tokens)}"))
        if len(tokens) >= 2:
            refreshed.set()
        return tokens[-1]

    statuses: list[StatusChange] = []
    async with Client(secured.url, token=provider, backoff=FAST, on_status=statuses.append) as c:
        sub = c.subscribe("alerts")
        await sub.ready()
        await asyncio.wait_for(refreshed.wait(), 5)  # a fresh token before exp
        await asyncio.sleep(2.5)  # past the first token's exp: still the same connection
        event = await c.publish("alerts", "m", 1)
        assert await _next(sub) == event
    assert [s.status for s in statuses].count(Status.CONNECTED) == 1


def test_sync_wrapper_subscribes_and_publishes() -> None:
    async def scenario() -> None:
        async with running_hub() as hub:
            await asyncio.to_thread(_sync_round_trip, hub.url)

    asyncio.run(scenario())


def _sync_round_trip(url: str) -> None:
    stop = threading.Event()
    with SyncClient(url, transport="sse") as publisher:

        def keep_publishing() -> None:
            # The iterator subscribes on its first next(): publish until it has seen some.
            n = 0
            while not stop.is_set():
                publisher.publish("alerts", "m", n)
                n += 1
                stop.wait(0.02)

        thread = threading.Thread(target=keep_publishing)
        thread.start()
        got: list[Event] = []
        try:
            for event in subscribe(url, "alerts", timeout=5):
                got.append(event)
                if len(got) == 3:
                    break
        finally:
            stop.set()
            thread.join(5)
        numbers = [event.data for event in got]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        assert publisher.ping() > 0
