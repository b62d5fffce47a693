"""Scale-out over Redis, with real ``tidings serve`` processes and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from tests.redis_support import RedisServer, delete_prefix, redis_url, unique_prefix, with_options
from tests.servers import HubProcess, start_process
from tests.sse_support import next_event
from tidings.auth.tokens import mint_token

SECRET = "cluster-test-secret-long-enough-for-hs256"
API_KEY = "cluster-test-api-key-0123456789abcdef"


@contextlib.contextmanager
def nodes(url: str, count: int = 2, *extra: str) -> Iterator[list[HubProcess]]:
    started: list[HubProcess] = []
    try:
        for _ in range(count):
            started.append(
                start_process("--broker", url, "--store", url, "--log-level", "warning", *extra)
            )
        yield started
    finally:
        with contextlib.ExitStack() as closing:
            # Every node is closed (its pipe too) even when stopping one of them fails.
            for node in started:
                closing.callback(node.close)
            for node in started:
                node.stop()


@pytest.fixture
async def shared_redis() -> AsyncIterator[str]:
    base = redis_url()
    prefix = unique_prefix()
    yield with_options(base, prefix=prefix)
    await delete_prefix(base, prefix)


async def _subscriber(url: str, ready: asyncio.Event, count: int) -> list[str]:
    ids: list[str] = []
    async with websockets.connect(url + "/ws?channel=cluster", max_queue=None) as ws:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "subscribed":
                ready.set()
            elif message["type"] == "event":
                ids.append(message["data"]["id"])
                if len(ids) == count:
                    return ids
            elif message["type"] in ("reset", "error", "disconnect"):
                raise AssertionError(message)


async def test_two_nodes_deliver_everything_in_one_order(shared_redis: str) -> None:
    with nodes(shared_redis) as (a, b):
        total = 1000
        readies = [asyncio.Event() for _ in range(50)]
        subscribers = [
            asyncio.create_task(
                _subscriber((a if i % 2 else b).url.replace("http", "ws"), readies[i], total)
            )
            for i in range(50)
        ]
        async with asyncio.timeout(60):
            await asyncio.gather(*(ready.wait() for ready in readies))

            async def publish(node: HubProcess, numbers: range) -> None:
                async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
                    for n in numbers:
                        response = await http.post(
                            "/api/v1/publish", json={"channel": "cluster", "data": n}
                        )
                        assert response.status_code == 201

            # Both nodes publish at once, interleaved: order is decided by the shared store.
            await asyncio.gather(publish(a, range(0, total, 2)), publish(b, range(1, total, 2)))
            results = await asyncio.gather(*subscribers)
        first = results[0]
        assert len(first) == total
        assert len(set(first)) == total
        offsets = [int(i.rsplit("-", 1)[1]) for i in first]
        assert offsets == sorted(offsets)
        for ids in results[1:]:
            assert ids == first


async def test_resume_on_another_node(shared_redis: str) -> None:
    with nodes(shared_redis) as (a, b):
        async with httpx.AsyncClient(timeout=10) as http:
            async with websockets.connect(a.url.replace("http", "ws") + "/ws?channel=r") as ws:
                assert json.loads(await ws.recv())["type"] == "connected"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                for n in range(10):
                    await http.post(a.url + "/api/v1/publish", json={"channel": "r", "data": n})
                seen = []
                async with asyncio.timeout(10):
                    while len(seen) < 10:
                        message = json.loads(await ws.recv())
                        if message["type"] == "event":
                            seen.append(message["data"])
            missed = []
            for n in range(10, 30):
                node = a if n % 2 else b
                response = await http.post(
                    node.url + "/api/v1/publish", json={"channel": "r", "data": n}
                )
                missed.append(response.json())
            async with websockets.connect(b.url.replace("http", "ws") + "/ws") as ws:
                await ws.send(
                    json.dumps({"type": "subscribe", "channel": "r", "since": seen[-1]["id"]})
                )
                got = []
                async with asyncio.timeout(10):
                    while len(got) < 20:
                        message = json.loads(await ws.recv())
                        assert message["type"] != "reset"
                        if message["type"] == "subscribed":
                            assert message["recovered"] is True
                        if message["type"] == "event":
                            got.append(message["data"])
                assert got == missed
                live = (
                    await http.post(
                        a.url + "/api/v1/publish", json={"channel": "r", "data": "live"}
                    )
                ).json()
                async with asyncio.timeout(10):
                    while True:
                        message = json.loads(await ws.recv())
                        if message["type"] == "event":
                            assert message["data"] == live
                            break


async def test_revoke_on_one_node_closes_the_client_on_the_other(shared_redis: str) -> None:
    extra = ("--jwt-secret", SECRET, "--api-key", f"ops={API_KEY}")
    with nodes(shared_redis, 2, *extra) as (a, b):
        token = mint_token(SECRET, sub="zoe", channels=["*"])
        url = b.url.replace("http", "ws") + f"/ws?token={token}"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            async with httpx.AsyncClient(timeout=10) as http:
                # Presence counts node B's connection when asked on node A.
                async with asyncio.timeout(10):
                    while True:
                        presence = await http.get(
                            a.url + "/api/v1/channels/client:zoe/presence",
                            headers={"Authorization": f"Bearer {API_KEY}"},
                        )
                        if presence.json()["connections"] == 1:
                            break
                        await asyncio.sleep(0.05)  # presence is written within a moment
                assert presence.json()["clients"] == ["zoe"]
                personal = await http.post(
                    a.url + "/api/v1/clients/zoe/events",
                    json={"type": "hello", "data": 1},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                assert personal.status_code == 201
                async with asyncio.timeout(10):
                    while (message := json.loads(await ws.recv()))["type"] != "event":
                        pass
                assert message["data"]["type"] == "hello"
                response = await http.post(
                    a.url + "/api/v1/clients/zoe/disconnect",
                    json={"reason": "token_revoked", "revoke": True},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                assert response.status_code == 202
                async with asyncio.timeout(10):
                    while (message := json.loads(await ws.recv()))["type"] != "disconnect":
                        pass
                assert message["reason"] == "token_revoked"
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 4004
                # Refused on both nodes now.
                for node in (a, b):
                    again = await http.get(node.url + f"/api/v1/channels/x/history?token={token}")
                    assert again.status_code == 401


async def test_redis_outage_gives_503_loses_nothing_acknowledged_and_recovers() -> None:
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        from tests.redis_support import no_redis

        no_redis(str(exc))
    try:
        with nodes(server.url, 1) as (node,):
            received: list[Any] = []
            acked: list[int] = []
            refused: list[int] = []
            ws_url = node.url.replace("http", "ws") + "/ws?channel=outage"
            async with (
                websockets.connect(ws_url, max_queue=None) as ws,
                httpx.AsyncClient(base_url=node.url, timeout=5) as http,
            ):
                assert json.loads(await ws.recv())["type"] == "connected"
                assert json.loads(await ws.recv())["type"] == "subscribed"

                arrived = asyncio.Event()

                async def read() -> None:
                    while True:
                        message = json.loads(await ws.recv())
                        if message["type"] == "event":
                            received.append(message["data"]["data"])
                            arrived.set()

                reader = asyncio.create_task(read())
                loop = asyncio.get_running_loop()
                start = loop.time()
                ready_during_outage = None
                for n in range(500):  # 100 events/s for 5 s
                    await asyncio.sleep(max(0.0, start + n / 100 - loop.time()))
                    if n == 150:
                        await asyncio.to_thread(server.stop)
                        ready_during_outage = (await http.get("/ready")).status_code
                    if n == 350:
                        await asyncio.to_thread(server.start)
                    response = await http.post(
                        "/api/v1/publish", json={"channel": "outage", "data": n}
                    )
                    if response.status_code == 201:
                        acked.append(n)
                    else:
                        assert response.status_code == 503, response.text
                        assert response.json()["error"]["code"] == "unavailable"
                        refused.append(n)
                assert ready_during_outage == 503
                assert refused, "publishes during the outage must be refused"
                assert acked[-1] == 499, "the hub must serve again without a restart"
                async with asyncio.timeout(15):
                    while not set(acked) <= set(received):
                        arrived.clear()
                        await arrived.wait()
                reader.cancel()
                assert (await http.get("/ready")).status_code == 200
                assert set(received) <= set(acked)
    finally:
        server.stop()


def _free_port_pair() -> int:
    """A port P such that P and P + 1 are free (now)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free ports")


async def test_workers_share_one_port_and_shut_down_gracefully(shared_redis: str) -> None:
    import signal

    own = _free_port_pair()
    node = start_process(
        *("--workers", "2", "--node-id", "box", "--worker-ports", str(own)),
        *("--broker", shared_redis, "--store", shared_redis),
    )
    try:
        ws_url = node.url.replace("http", "ws") + "/ws?channel=w"
        clients = [await websockets.connect(ws_url) for _ in range(16)]
        connection_ids = set()
        for ws in clients:
            connected = json.loads(await ws.recv())
            connection_ids.add(connected["connection_id"])
            assert json.loads(await ws.recv())["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
            # Whichever worker answers lists every worker's connections (each names its
            # worker), once the others' listings are written: within a second or so.
            async with asyncio.timeout(10):
                while True:
                    listed = (
                        await http.get("/api/v1/connections", headers={"Connection": "close"})
                    ).json()["connections"]
                    if {c["id"] for c in listed} == connection_ids:
                        break
                    await asyncio.sleep(0.1)
            assert len(listed) == len(connection_ids)
            # Both workers serve some: the kernel spread the connections.
            assert {c["node"] for c in listed} == {"box-w0", "box-w1"}
            # Each worker is scraped alone on its own port, its samples named by its node.
            for index in (0, 1):
                metrics = (await http.get(f"http://127.0.0.1:{own + index}/metrics")).text
                opened = [
                    line
                    for line in metrics.splitlines()
                    if line.startswith("tidings_connections_opened_total")
                ]
                assert opened == [
                    f'tidings_connections_opened_total{{node="box-w{index}"}} '
                    f"{sum(c['node'] == f'box-w{index}' for c in listed)}.0"
                ]
            event = (await http.post("/api/v1/publish", json={"channel": "w", "data": 1})).json()
        for ws in clients:
            async with asyncio.timeout(10):
                while (message := json.loads(await ws.recv()))["type"] != "event":
                    pass
            assert message["data"] == event
        node.process.send_signal(signal.SIGTERM)
        for ws in clients:
            async with asyncio.timeout(10):
                while (message := json.loads(await ws.recv()))["type"] != "disconnect":
                    pass
            assert message["reason"] == "server_shutdown"
        started = time.monotonic()
        assert await asyncio.to_thread(node.process.wait, 10) == 0
        assert time.monotonic() - started < 5
        for ws in clients:
            await ws.close()
    finally:
        node.stop()
        node.close()


async def test_server_side_subscribe_reaches_every_node_and_survives_a_move(
    shared_redis: str,
) -> None:
    extra = ("--jwt-secret", SECRET, "--api-key", f"ops={API_KEY}")
    admin = {"Authorization": f"Bearer {API_KEY}"}
    with nodes(shared_redis, 2, *extra) as (a, b):
        token = mint_token(SECRET, sub="yan", channels=["public:*"])
        url = b.url.replace("http", "ws") + f"/ws?token={token}"
        async with websockets.connect(url) as ws, httpx.AsyncClient(timeout=10) as http:
            async with asyncio.timeout(10):
                while json.loads(await ws.recv())["type"] != "subscribed":
                    pass
            # SSE on node A, WebSocket on node B; the call goes to node A.
            sse_url = a.url + "/api/v1/events?channel=public:x"
            headers = {"Authorization": f"Bearer {token}"}
            async with aconnect_sse(http, "GET", sse_url, headers=headers) as source:
                events = source.aiter_sse()
                async with asyncio.timeout(10):
                    while (await anext(events)).event != "position":
                        pass
                response = await http.post(
                    a.url + "/api/v1/clients/yan/subscribe", json={"channel": "ops"}, headers=admin
                )
                assert response.status_code == 202
                async with asyncio.timeout(10):
                    while (message := json.loads(await ws.recv()))["type"] != "subscribed":
                        pass
                    assert message["channel"] == "ops"
                    while (position := await anext(events)).event != "position":
                        pass
                assert "ops;" in position.id
                published = await http.post(
                    b.url + "/api/v1/publish",
                    json={"channel": "ops", "type": "alarm", "data": 1},
                    headers=admin,
                )
                assert published.status_code == 201
                seen = await next_event(events, timeout=10)
                assert seen.event == "alarm"
                async with asyncio.timeout(10):
                    while (message := json.loads(await ws.recv()))["type"] != "event":
                        pass
                assert message["data"]["id"] == published.json()["id"]
                cursor = seen.id
            # The SSE client comes back on node B, which learnt of the grant by the broker.
            missed = await http.post(
                a.url + "/api/v1/publish",
                json={"channel": "ops", "type": "missed", "data": 2},
                headers=admin,
            )
            resume = {**headers, "Last-Event-ID": cursor}
            sse_url_b = b.url + "/api/v1/events?channel=public:x"
            async with aconnect_sse(http, "GET", sse_url_b, headers=resume) as source:
                event = await next_event(source.aiter_sse(), timeout=10)
                assert event.event == "missed"
                assert json.loads(event.data)["id"] == missed.json()["id"]
            # Taken off through node B: node B's WebSocket hears it.
            response = await http.post(
                b.url + "/api/v1/clients/yan/unsubscribe", json={"channel": "ops"}, headers=admin
            )
            assert response.status_code == 202
            async with asyncio.timeout(10):
                while (message := json.loads(await ws.recv()))["type"] != "unsubscribed":
                    pass
            assert message["channel"] == "ops"


async def test_connection_rate_holds_across_nodes(shared_redis: str) -> None:
    with nodes(shared_redis, 2, "--connection-rate", "5") as (a, b):
        async with httpx.AsyncClient(timeout=10) as http:
            statuses = []
            for n in range(6):  # one address, its streams spread over both nodes
                node = a if n % 2 else b
                async with http.stream("GET", node.url + "/api/v1/events?channel=rl") as response:
                    statuses.append(response.status_code)
                    if response.status_code == 429:
                        await response.aread()
                        refusal = response
            assert statuses == [200] * 5 + [429]
            assert refusal.json()["error"]["code"] == "rate_limited"
            assert 0 < float(refusal.headers["Retry-After"]) <= 12


async def test_publish_rate_per_client_holds_across_nodes(shared_redis: str) -> None:
    with nodes(shared_redis, 2, "--jwt-secret", SECRET, "--publish-rate", "2") as (a, b):

        def bearer(sub: str) -> dict[str, str]:
            token = mint_token(SECRET, sub=sub, channels=["rl"], publish=["rl"])
            return {"Authorization": f"Bearer {token}"}

        async with httpx.AsyncClient(timeout=10) as http:
            answers = []
            for n in range(4):  # within the half second one token takes to come back
                node = a if n % 2 else b
                answers.append(
                    await http.post(
                        node.url + "/api/v1/publish",
                        json={"channel": "rl", "data": n},
                        headers=bearer("pat"),
                    )
                )
            # Each node alone would allow its two; together they allow two (and what
            # refilled meanwhile), never four.
            refused = [r for r in answers if r.status_code != 201]
            assert refused, [r.status_code for r in answers]
            assert answers[0].status_code == answers[1].status_code == 201
            assert {r.status_code for r in refused} == {429}
            assert refused[0].json()["error"]["code"] == "rate_limited"
            # Another client has a bucket of its own.
            other = await http.post(
                a.url + "/api/v1/publish",
                json={"channel": "rl", "data": 0},
                headers=bearer("quinn"),
            )
            assert other.status_code == 201


async def test_connections_list_every_node_within_the_admins_tenant(shared_redis: str) -> None:
    with nodes(shared_redis, 2, "--jwt-secret", SECRET) as (a, b):

        def ws_url(node: HubProcess, sub: str, tenant: str) -> str:
            token = mint_token(SECRET, sub=sub, tenant=tenant, channels=["**"])
            return node.url.replace("http", "ws") + f"/ws?token={token}"

        def bearer(**claims: Any) -> dict[str, str]:
            return {"Authorization": "Bearer " + mint_token(SECRET, sub="ops", **claims)}

        async def listed(node: HubProcess, headers: dict[str, str], count: int) -> list[Any]:
            # Other nodes' listings are written within a second of a change: poll for it.
            async with asyncio.timeout(10):
                while True:
                    response = await http.get(node.url + "/api/v1/connections", headers=headers)
                    assert response.status_code == 200, response.text
                    found: list[Any] = response.json()["connections"]
                    if len(found) == count:
                        return found
                    await asyncio.sleep(0.1)

        ids = {}
        async with (
            httpx.AsyncClient(timeout=10) as http,
            websockets.connect(ws_url(a, "carol", "acme")) as carol,
            websockets.connect(ws_url(b, "bob", "acme")) as bob,
            websockets.connect(ws_url(b, "bob", "other")) as other_bob,
        ):
            for name, ws in (("carol", carol), ("bob", bob), ("other_bob", other_bob)):
                ids[name] = json.loads(await ws.recv())["connection_id"]
            acme = bearer(tenant="acme", admin=True)
            for node in (a, b):
                found = await listed(node, acme, 2)
                assert {c["id"] for c in found} == {ids["carol"], ids["bob"]}
                assert {c["tenant"] for c in found} == {"acme"}
            everyone = await listed(a, bearer(admin=True), 3)
            by_id = {c["id"]: c for c in everyone}
            assert set(by_id) == set(ids.values())
            assert by_id[ids["bob"]]["node"] == by_id[ids["other_bob"]]["node"]
            assert by_id[ids["bob"]]["node"] != by_id[ids["carol"]]["node"]
            assert by_id[ids["bob"]]["channels"] == ["tenant:acme/client:bob"]
            await bob.close()
            # A closed connection leaves the other nodes' lists too.
            assert [c["id"] for c in await listed(a, acme, 1)] == [ids["carol"]]
            # A node that stops takes its listing with it at once (one that dies: when
            # its listing expires, as the presence contract tests check).
            assert await asyncio.to_thread(b.stop) == 0
            assert [c["id"] for c in await listed(a, bearer(admin=True), 1)] == [ids["carol"]]


async def test_redis_restarted_without_its_data_tells_subscribers_with_reset() -> None:
    """Redis comes back empty (no persistence): the node reconnects by itself, and its
    subscribers, WebSocket and SSE, get ``reset`` for the history that is gone, then the
    events published after the restart; a client resuming from before gets ``reset``."""
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        from tests.redis_support import no_redis

        no_redis(str(exc))
    try:
        with nodes(server.url, 1) as (node,):
            ws_url = node.url.replace("http", "ws") + "/ws?channel=kept"
            async with (
                websockets.connect(ws_url) as ws,
                httpx.AsyncClient(base_url=node.url, timeout=5) as http,
                aconnect_sse(http, "GET", "/api/v1/events?channel=kept") as sse,
            ):
                events = sse.aiter_sse()
                assert json.loads(await ws.recv())["type"] == "connected"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                before = (
                    await http.post("/api/v1/publish", json={"channel": "kept", "data": "before"})
                ).json()
                async with asyncio.timeout(10):
                    while (message := json.loads(await ws.recv()))["type"] != "event":
                        pass
                assert message["data"] == before
                assert json.loads((await next_event(events)).data) == before

                await asyncio.to_thread(server.stop)
                refused = await http.post("/api/v1/publish", json={"channel": "kept", "data": 0})
                assert refused.status_code == 503
                assert refused.json()["error"]["code"] == "unavailable"
                await asyncio.to_thread(server.start)  # empty: nothing was persisted

                # The node reconnects by itself: publishes succeed again, without a restart.
                async with asyncio.timeout(15):
                    while True:
                        after = await http.post(
                            "/api/v1/publish", json={"channel": "kept", "data": "after"}
                        )
                        if after.status_code == 201:
                            break
                        assert after.status_code == 503, after.text
                        await asyncio.sleep(0.1)  # the broker's backoff, nothing to await
                assert after.json()["id"].split("-")[0] != before["id"].split("-")[0]

                async with asyncio.timeout(10):
                    while (message := json.loads(await ws.recv()))["type"] != "reset":
                        assert message["type"] != "event", message
                    assert message["channel"] == "kept"
                    assert message["reason"] == "history_gap"
                    while (message := json.loads(await ws.recv()))["type"] != "event":
                        pass
                assert message["data"] == after.json()
                reset = await next_event(events)
                assert reset.event == "reset"
                assert json.loads(reset.data)["channel"] == "kept"
                assert json.loads((await next_event(events, skip=("reset",))).data) == after.json()

            # A client resuming from before the restart is told too.
            async with websockets.connect(node.url.replace("http", "ws") + "/ws") as late:
                await late.send(
                    json.dumps({"type": "subscribe", "channel": "kept", "since": before["id"]})
                )
                async with asyncio.timeout(10):
                    while (message := json.loads(await late.recv()))["type"] != "reset":
                        assert message["type"] != "event", message
                assert message["channel"] == "kept"
    finally:
        server.stop()
