"""SPEC §8 "Embedded": a hub mounted inside a user's own FastAPI app, served by uvicorn
on a real socket, publishing from async routes, sync routes and plain threads.

The user's app owns the lifespan (``async with hub:``) and its own routes; the hub is
mounted at ``/realtime``. Clients are real: ``httpx-sse`` and ``websockets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import websockets
from fastapi import FastAPI
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import ClientConnection

from tests.servers import running_app
from tests.sse_support import next_event
from tidings.hub import Hub
from tidings.settings import Settings

CHANNEL = "x"


def user_app(hub: Hub, *, start_hub: bool = True) -> FastAPI:
    """A small shop backend that embeds ``hub``, the way SPEC §8 tells users to."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_hub:
            async with hub:
                yield
        else:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def home() -> dict[str, str]:
        return {"app": "shop"}

    @app.post("/orders", status_code=201)
    async def create_order(order: dict[str, Any]) -> dict[str, Any]:
        event = await hub.publish(CHANNEL, "order.created", order)
        return event.to_dict()

    @app.post("/payments", status_code=201)
    async def record_payment(payment: dict[str, Any]) -> dict[str, Any]:
        event = await hub.publish(
            CHANNEL, "payment.received", payment, idempotency_key=payment["payment_id"]
        )
        return event.to_dict()

    @app.post("/sync/notify")
    def notify(body: dict[str, Any]) -> dict[str, int]:
        # A plain ``def`` route: FastAPI runs it in a worker thread.
        hub.publish_nowait(CHANNEL, "sync.notify", body)
        return {"thread": threading.get_ident()}

    app.mount("/realtime", hub.asgi_app())
    return app


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http


def ws_url(http: httpx.AsyncClient, path: str) -> str:
    return str(http.base_url).replace("http://", "ws://").rstrip("/") + path


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def recv_type(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type ``kind``, skipping pings."""
    async with asyncio.timeout(5):
        while True:
            message = await recv(ws)
            if message["type"] != "ping":
                assert message["type"] == kind, message
                return message


@contextlib.asynccontextmanager
async def ws_client(
    http: httpx.AsyncClient, channel: str = CHANNEL
) -> AsyncIterator[ClientConnection]:
    """A WebSocket client on ``/realtime/ws``, subscribed to ``channel`` when it returns."""
    async with websockets.connect(ws_url(http, f"/realtime/ws?channel={channel}")) as ws:
        assert (await recv_type(ws, "connected"))["connection_id"]
        subscribed = await recv_type(ws, "subscribed")
        assert subscribed["channel"] == channel
        yield ws


@contextlib.asynccontextmanager
async def sse_client(
    http: httpx.AsyncClient, channel: str = CHANNEL
) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
    """An SSE stream on ``/realtime/api/v1/events``, subscribed when it returns."""
    async with aconnect_sse(http, "GET", f"/realtime/api/v1/events?channel={channel}") as source:
        assert source.response.status_code == 200
        events = source.aiter_sse()
        # The position frame is queued once the subscriptions are made.
        async with asyncio.timeout(5):
            while True:
                frame = await anext(events)
                if frame.event == "position":
                    break
        yield events


async def next_sse(events: AsyncIterator[ServerSentEvent]) -> dict[str, Any]:
    """The next event's JSON, skipping the hub's position frames."""
    frame = await next_event(events)
    data: dict[str, Any] = json.loads(frame.data)
    assert frame.id == data["id"]
    return data


async def next_ws_event(ws: ClientConnection) -> dict[str, Any]:
    return (await recv_type(ws, "event"))["data"]


# -- publishing from the user's code -----------------------------------------------------


async def test_async_route_publish_reaches_sse_and_websocket() -> None:
    hub = Hub(Settings())
    async with serve(user_app(hub)) as http:
        # The user's own routes and the hub's share one server.
        assert (await http.get("/")).json() == {"app": "shop"}
        assert (await http.get("/realtime/health")).status_code == 200
        assert hub.started
        async with sse_client(http) as events, ws_client(http) as ws:
            response = await http.post("/orders", json={"order": 17, "total": "9.90"})
            assert response.status_code == 201, response.text
            stored = response.json()
            assert stored["channel"] == CHANNEL and stored["type"] == "order.created"
            assert stored["data"] == {"order": 17, "total": "9.90"}
            assert await next_ws_event(ws) == stored
            assert await next_sse(events) == stored
    # The user's lifespan stopped the hub when the app shut down.
    assert not hub.started


async def test_publish_nowait_from_threads_delivers_all_in_each_threads_order() -> None:
    hub = Hub(Settings())
    threads_n, per_thread = 4, 25
    async with serve(user_app(hub)) as http:
        async with sse_client(http) as events, ws_client(http) as ws:
            barrier = threading.Barrier(threads_n)

            def producer(thread_no: int) -> None:
                barrier.wait(timeout=5)
                for seq in range(per_thread):
                    hub.publish_nowait(CHANNEL, "tick", {"thread": thread_no, "seq": seq})

            threads = [
                threading.Thread(target=producer, args=(n,), daemon=True) for n in range(threads_n)
            ]
            for thread in threads:
                thread.start()
            total = threads_n * per_thread
            over_ws = [await next_ws_event(ws) for _ in range(total)]
            over_sse = [await next_sse(events) for _ in range(total)]
            for thread in threads:
                thread.join(timeout=5)
                assert not thread.is_alive()
    for received in (over_ws, over_sse):
        for thread_no in range(threads_n):
            seqs = [e["data"]["seq"] for e in received if e["data"]["thread"] == thread_no]
            assert seqs == list(range(per_thread))
    # One channel, one order: both transports saw the same sequence of ids.
    assert [e["id"] for e in over_ws] == [e["id"] for e in over_sse]
    assert len({e["id"] for e in over_ws}) == total
    assert hub.counters.nowait_failed == 0


async def test_sync_route_publish_nowait_runs_in_a_thread_and_is_delivered() -> None:
    hub = Hub(Settings())
    async with serve(user_app(hub)) as http:
        async with sse_client(http) as events, ws_client(http) as ws:
            response = await http.post("/sync/notify", json={"camera": 3})
            assert response.status_code == 200
            # FastAPI ran the def route in its threadpool, not on the event loop's thread.
            assert response.json()["thread"] != threading.get_ident()
            from_ws = await next_ws_event(ws)
            assert from_ws["type"] == "sync.notify" and from_ws["data"] == {"camera": 3}
            assert await next_sse(events) == from_ws


async def test_mounted_without_starting_the_hub_starts_it_on_first_request() -> None:
    hub = Hub(Settings())
    try:
        async with serve(user_app(hub, start_hub=False)) as http:
            assert (await http.get("/")).json() == {"app": "shop"}
            assert not hub.started  # a request to the user's own route does not start it
            async with ws_client(http) as ws:
                assert hub.started
                async with sse_client(http) as events:
                    response = await http.post("/orders", json={"order": 1})
                    assert response.status_code == 201, response.text
                    stored = response.json()
                    assert await next_ws_event(ws) == stored
                    assert await next_sse(events) == stored
    finally:
        await hub.stop()


async def test_dashboard_works_under_the_mount() -> None:
    """The dashboard's API paths are relative, so they reach the hub at ``/realtime/``."""
    hub = Hub(Settings())
    async with serve(user_app(hub)) as http:
        page = await http.get("/realtime/", follow_redirects=True)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        paths = set(re.findall(r"[\"'`](/?api/v1/[a-z/]+)", page.text))
        assert paths, "the dashboard uses no API path"
        assert not [p for p in paths if p.startswith("/")], paths
        for path in paths:
            url = urljoin(str(page.url), path)
            assert url.startswith(str(http.base_url).rstrip("/") + "/realtime/api/v1/")
        events_url = urljoin(str(page.url), "api/v1/events") + f"?plain=1&channel={CHANNEL}"
        async with aconnect_sse(http, "GET", events_url) as source:
            assert source.response.status_code == 200
        published = await http.post(
            urljoin(str(page.url), "api/v1/publish"), json={"channel": CHANNEL, "data": 1}
        )
        assert published.status_code == 201, published.text


async def test_idempotent_publish_is_delivered_once() -> None:
    hub = Hub(Settings())
    async with serve(user_app(hub)) as http:
        async with sse_client(http) as events, ws_client(http) as ws:
            first = await http.post("/payments", json={"payment_id": "p-1", "cents": 990})
            again = await http.post("/payments", json={"payment_id": "p-1", "cents": 990})
            assert first.status_code == again.status_code == 201
            assert first.json() == again.json()
            other = (await http.post("/payments", json={"payment_id": "p-2", "cents": 5})).json()
            assert other["id"] != first.json()["id"]
            # p-1 once, then p-2: the retry was not published a second time.
            assert await next_ws_event(ws) == first.json()
            assert await next_ws_event(ws) == other
            assert await next_sse(events) == first.json()
            assert await next_sse(events) == other
        direct = await hub.publish(
            CHANNEL, "payment.received", {"payment_id": "p-1"}, idempotency_key="p-1"
        )
        assert direct.to_dict() == first.json()
        page = await hub.history(CHANNEL)
        assert [e.id for e in page.events] == [first.json()["id"], other["id"]]


# -- publish_nowait never raises ------------------------------------------------------------


def test_publish_nowait_before_start_is_counted_not_raised() -> None:
    hub = Hub(Settings())
    hub.publish_nowait(CHANNEL, "early", {"n": 1})
    thread = threading.Thread(target=hub.publish_nowait, args=(CHANNEL, "early", {"n": 2}))
    thread.start()
    thread.join(timeout=5)
    assert hub.counters.nowait_failed == 2
    assert hub.counters.published == 0


def test_publish_nowait_after_the_loop_is_gone_is_counted_not_raised() -> None:
    """A worker thread that outlives the app's event loop must not get an exception."""
    hub = Hub(Settings())
    asyncio.run(hub.start())  # the hub's loop is closed when this returns
    errors: list[BaseException] = []

    def late_worker() -> None:
        try:
            hub.publish_nowait(CHANNEL, "late", {"n": 1})
        except BaseException as exc:  # what the test is about
            errors.append(exc)

    thread = threading.Thread(target=late_worker)
    thread.start()
    thread.join(timeout=5)
    assert errors == []
    assert hub.counters.nowait_failed == 1


async def test_publish_nowait_failures_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(Settings(max_event_size=1024))
    caplog.set_level(logging.WARNING, logger="tidings.hub")
    async with serve(user_app(hub)) as http, ws_client(http) as ws:
        hub.publish_nowait("not a channel!", "tick", {})
        hub.publish_nowait(CHANNEL, "tick", {"blob": "x" * 4096})
        hub.publish_nowait(CHANNEL, "tick", {"not_json": object()})
        thread = threading.Thread(target=hub.publish_nowait, args=("", "tick", {}))
        thread.start()
        thread.join(timeout=5)
        # One background task publishes in call order: once this arrives, every bad
        # publication before it has been tried.
        hub.publish_nowait(CHANNEL, "marker", {"last": True})
        marker = await next_ws_event(ws)
        assert marker["type"] == "marker"
        assert hub.counters.nowait_failed == 4
        assert hub.counters.published == 1
    failures = [r for r in caplog.records if "publish_nowait failed" in r.getMessage()]
    assert len(failures) == 4


async def test_publish_nowait_just_before_stop_is_not_lost() -> None:
    hub = Hub(Settings())
    await hub.start()
    for n in range(5):
        hub.publish_nowait(CHANNEL, "late", {"n": n})
    await hub.stop()
    page = await hub.store.read(CHANNEL, limit=10)
    assert [e.data["n"] for e in page.events] == list(range(5))
    assert hub.counters.nowait_failed == 0


# -- commands ---------------------------------------------------------------------------------


async def test_commands_answer_over_websocket() -> None:
    hub = Hub(Settings())
    calls: list[tuple[Any, dict[str, Any]]] = []

    @hub.command("job.cancel")
    async def cancel_job(identity: Any, args: dict[str, Any]) -> dict[str, Any]:
        calls.append((identity, args))
        return {"job_id": args["job_id"], "status": "cancelled"}

    @hub.command("job.explode")
    async def explode(identity: Any, args: dict[str, Any]) -> None:
        raise RuntimeError("db password hunter2 leaked in a traceback")

    async with serve(user_app(hub)) as http, ws_client(http) as ws:
        await ws.send(
            json.dumps({"type": "command", "name": "job.cancel", "args": {"job_id": "j1"}, "id": 1})
        )
        assert await recv_type(ws, "result") == {
            "type": "result",
            "id": 1,
            "data": {"job_id": "j1", "status": "cancelled"},
        }
        assert calls[0][1] == {"job_id": "j1"}

        await ws.send(json.dumps({"type": "command", "name": "job.teleport", "args": {}, "id": 2}))
        unknown = await recv_type(ws, "error")
        assert unknown["code"] == "unknown_command" and unknown["id"] == 2

        await ws.send(json.dumps({"type": "command", "name": "job.explode", "args": {}, "id": 3}))
        failed = await recv_type(ws, "error")
        assert failed["code"] == "command_failed" and failed["id"] == 3
        for leak in ("hunter2", "Traceback", "RuntimeError", "File "):
            assert leak not in failed["message"]

        # Still usable: another command, and a live event.
        await ws.send(
            json.dumps({"type": "command", "name": "job.cancel", "args": {"job_id": "j2"}, "id": 4})
        )
        assert (await recv_type(ws, "result"))["data"] == {"job_id": "j2", "status": "cancelled"}
        stored = (await http.post("/orders", json={"order": 2})).json()
        assert await next_ws_event(ws) == stored
    assert len(calls) == 2
