"""What only the Redis backends promise, beyond the contracts they also pass: nodes on one
Redis see each other in order, a broker over a store on its own Redis publishes in the
store's atomic append, the broker survives its server going away (killed, or frozen), and keys are
laid out and expire as :mod:`tidings.backends.redis` documents."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests import redis_support
from tests.contract.test_broker import WAIT, Collector, make_events, publish
from tidings.backends import broker_from_url, presence_from_url, store_from_url
from tidings.backends.base import NewEvent, StoreLimits
from tidings.backends.memory import MemoryStore
from tidings.backends.redis import RedisPresence, connect, parse_redis_url
from tidings.backends.redis_broker import RedisBroker
from tidings.backends.redis_store import RedisStore
from tidings.core.events import Event, format_timestamp
from tidings.errors import Unavailable
from tidings.tasks import cancel_and_wait

pytestmark = pytest.mark.redis


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """The shared test Redis, under a key prefix of this test's own (deleted after)."""
    server = redis_support.redis_url()
    prefix = redis_support.unique_prefix()
    yield redis_support.with_options(server, prefix=prefix)
    await redis_support.delete_prefix(server, prefix)


@pytest.fixture
def private_server() -> Iterator[redis_support.RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    redis_support.redis_url()  # skips (or fails) like every Redis test when there is none
    server = redis_support.RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        redis_support.no_redis(f"cannot start a private redis-server: {exc}")
    yield server
    server.stop()


class Node:
    """A started broker, what it received, and how often it was told to resync."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.events: Collector[Event] = Collector()
        self.controls: Collector[dict[str, object]] = Collector()
        self.resyncs: Collector[None] = Collector()

    async def start(self) -> Node:
        await self.broker.start(self.events, self.controls, lambda: self.resyncs(None))
        return self


async def until_unsubscribed(broker: RedisBroker) -> None:
    # Nothing announces a lost subscription: poll briefly (the caller bounds the wait).
    while broker.subscribed:
        await asyncio.sleep(0.02)


def new(channel: str, n: int) -> NewEvent:
    return NewEvent(channel, "t", {"n": n}, format_timestamp(datetime.now(UTC)))


# --- several nodes on one Redis ---------------------------------------------------------------


async def test_two_brokers_see_each_others_events_in_order(url: str, channel: str) -> None:
    first, second = Node(RedisBroker(url)), Node(RedisBroker(url))
    try:
        await first.start()
        await second.start()
        sent: list[Event] = []
        for i, event in enumerate(make_events(channel, 1, 30)):
            sent += await publish((first if i % 3 else second).broker, [event])
        for node in (first, second):
            assert await node.events.wait_for(30) == sent
    finally:
        for node in (first, second):
            await node.broker.close()
            await node.broker.store.close()


async def test_an_atomic_broker_publishes_in_offset_order_across_nodes(
    url: str, channel: str
) -> None:
    # Two nodes append to one channel at once. The store's script publishes what it
    # stores, so every node receives offsets in order, once.
    nodes = []
    try:
        for _ in range(2):
            broker = RedisBroker(url, RedisStore(url, StoreLimits(history_size=1000)))
            assert broker.atomic
            nodes.append(await Node(broker).start())
        await asyncio.gather(
            *(nodes[i % 2].broker.publish([new(channel, i), new(channel, i)]) for i in range(100))
        )
        for node in nodes:
            received = await node.events.wait_for(200)
            assert [event.position.offset for event in received] == list(range(1, 201))
            assert len({event.position.epoch for event in received}) == 1
        # Nothing more arrives: each event was published once, by the script.
        marker = await publish(nodes[0].broker, make_events(channel + "-marker", 1, 1))
        for node in nodes:
            received = await node.events.wait_for(201)
            assert received[200:] == marker
    finally:
        for node in nodes:
            await node.broker.close()
            await node.broker.store.close()


async def test_only_a_store_on_the_same_redis_and_prefix_publishes_atomically(url: str) -> None:
    others = [
        MemoryStore(),
        RedisStore(redis_support.with_options(url, prefix="elsewhere")),
        RedisStore(redis_support.closed_port_url() + "?prefix=" + parse_redis_url(url).prefix),
    ]
    brokers = [RedisBroker(url, store) for store in others]
    try:
        assert [broker.atomic for broker in brokers] == [False, False, False]
    finally:
        for broker in brokers:
            await broker.close()
            await broker.store.close()


async def test_a_malformed_message_is_dropped_and_the_reader_goes_on(
    url: str, channel: str
) -> None:
    node = Node(RedisBroker(url))
    raw = aioredis.Redis.from_url(redis_support.redis_url())
    try:
        await node.start()
        for junk in (b"not json", b'{"an": "object"}', b'[{"id": "x"}]'):
            await raw.publish(node.broker.events_channel, junk)
        await raw.publish(node.broker.control_channel, b"[1, 2]")
        sent = await publish(node.broker, make_events(channel, 1, 1))
        assert await node.events.wait_for(1) == sent
        assert node.controls.items == []
    finally:
        await node.broker.close()
        await node.broker.store.close()
        await raw.aclose()


# --- the server goes away -------------------------------------------------------------------


async def test_broker_recovers_after_its_server_is_killed(
    private_server: redis_support.RedisServer, channel: str
) -> None:
    node = Node(RedisBroker(private_server.url, backoff_base=0.05, backoff_cap=0.5))
    try:
        await node.start()
        await node.broker.publish(make_events(channel, 1, 1))
        await node.events.wait_for(1)

        private_server.stop()
        began = time.monotonic()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(node.broker.publish(make_events(channel, 2, 1)), WAIT)
        assert time.monotonic() - began < 1.0
        with pytest.raises(Unavailable):
            await asyncio.wait_for(node.broker.ping(), WAIT)

        private_server.start()
        await node.resyncs.wait_for(1)  # reconnected and re-subscribed by itself
        await node.broker.ping()
        sent = await publish(node.broker, make_events(channel, 3, 2))
        assert (await node.events.wait_for(3))[1:] == sent
        assert len(node.resyncs.items) == 1
        assert node.broker.reconnects == 1
    finally:
        await node.broker.close()
        await node.broker.store.close()


@pytest.mark.parametrize("call", ["publish", "ping"])
async def test_a_call_that_reaches_redis_cuts_the_backoff_short(
    private_server: redis_support.RedisServer, channel: str, call: str
) -> None:
    # A backoff of at least 15 s: only a wake-up can bring the reader back within WAIT.
    node = Node(RedisBroker(private_server.url, backoff_base=30, backoff_cap=30))
    try:
        assert node.broker.atomic
        await node.start()
        await asyncio.to_thread(private_server.stop)
        await asyncio.wait_for(until_unsubscribed(node.broker), WAIT)
        await asyncio.to_thread(private_server.start)
        if call == "publish":
            await node.broker.publish(make_events(channel, 1, 1))
        else:
            # Still unsubscribed, so ping says unavailable; but it reached Redis.
            with pytest.raises(Unavailable):
                await node.broker.ping()
        await node.resyncs.wait_for(1)
        assert node.broker.subscribed
    finally:
        await node.broker.close()
        await node.broker.store.close()


async def test_broker_recovers_from_a_frozen_server(
    private_server: redis_support.RedisServer, channel: str
) -> None:
    # A stopped (not killed) server keeps its sockets open: only timeouts notice it.
    frozen_url = redis_support.with_options(private_server.url, socket_timeout="0.5")
    node = Node(RedisBroker(frozen_url, backoff_base=0.05, backoff_cap=0.5, health_interval=0.3))
    pid = private_server.pid
    try:
        await node.start()
        os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(Unavailable):
                await asyncio.wait_for(node.broker.publish(make_events(channel, 1, 1)), WAIT)
            assert time.monotonic() - began < 2.0
            with pytest.raises(Unavailable):
                await asyncio.wait_for(node.broker.ping(), WAIT)
            # The reader notices the silence by itself, and cannot subscribe again yet.
            await asyncio.wait_for(until_unsubscribed(node.broker), WAIT)
        finally:
            os.kill(pid, signal.SIGCONT)
        await node.resyncs.wait_for(1)
        assert node.broker.subscribed
        sent = await publish(node.broker, make_events(channel, 2, 1))
        received = await node.events.wait_for(1)
        assert received[-1] == sent[0]
        assert node.broker.reconnects == 1
    finally:
        await node.broker.close()
        await node.broker.store.close()


async def test_a_quiet_healthy_connection_is_kept(url: str, channel: str) -> None:
    # Silence alone is no failure: the reader's PING must be answered and keep it going.
    quick = redis_support.with_options(url, socket_timeout="0.3")
    node = Node(RedisBroker(quick, health_interval=0.1))
    try:
        await node.start()
        await asyncio.sleep(1.5)  # several health intervals and timeouts of silence
        assert node.broker.subscribed
        assert node.broker.reconnects == 0
        assert node.resyncs.items == []
        sent = await publish(node.broker, make_events(channel, 1, 1))
        assert await node.events.wait_for(1) == sent
    finally:
        await node.broker.close()
        await node.broker.store.close()


async def test_store_answers_again_after_a_restart_with_a_new_epoch(
    private_server: redis_support.RedisServer, channel: str
) -> None:
    store = RedisStore(private_server.url)
    try:
        [(before, _)] = await store.append([new(channel, 1)])
        private_server.stop()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(store.append([new(channel, 2)]), WAIT)
        private_server.start()  # without persistence: the history is gone
        [(after, _)] = await store.append([new(channel, 3)])
        assert after.position.epoch != before.position.epoch
        assert not (await store.read(channel, since=before.id)).complete
    finally:
        await store.close()


async def test_a_persistent_redis_keeps_history_and_epoch_across_a_kill(
    tmp_path: Path, channel: str
) -> None:
    server = redis_support.RedisServer(data_dir=tmp_path)
    try:
        server.start()
    except RuntimeError as exc:
        redis_support.no_redis(f"cannot start a private redis-server: {exc}")
    store = RedisStore(server.url)
    node = Node(RedisBroker(server.url, store, backoff_base=0.05, backoff_cap=0.5))
    try:
        await node.start()
        before = [
            event for event, _ in await node.broker.publish([new(channel, 1), new(channel, 2)])
        ]
        # In threads: the event loop must run meanwhile (as a hub's does), to see the
        # pooled connections close.
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        # Stored while the broker was still away: missed by pub/sub, kept by the store.
        [(during, _)] = await store.append([new(channel, 3)])
        await node.resyncs.wait_for(1)
        assert during.position.epoch == before[0].position.epoch
        page = await store.read(channel, since=before[0].id)
        assert page.complete
        assert page.events == [before[1], during]
    finally:
        await node.broker.close()
        await store.close()
        server.stop()


async def test_pooled_connections_work_after_a_restart(
    private_server: redis_support.RedisServer, channel: str
) -> None:
    # Connections idle in the pool through a restart are dead: none may fail a call after.
    store = RedisStore(private_server.url)
    presence = RedisPresence(private_server.url)
    node = Node(RedisBroker(private_server.url, backoff_base=0.05, backoff_cap=0.5))
    try:
        await node.start()
        calls = 8

        async def everything(n: int) -> None:
            await asyncio.gather(
                *(store.append([new(channel, n)]) for _ in range(calls)),
                *(presence.get(channel) for _ in range(calls)),
                *(node.broker.publish(make_events(channel, n, 1)) for _ in range(calls)),
            )

        await everything(1)  # fills each pool with several connections
        private_server.stop()
        private_server.start()
        await node.resyncs.wait_for(1)
        await everything(2)  # raises if a stale connection is handed out
        await node.events.wait_for(2 * calls)
    finally:
        await node.broker.close()
        await node.broker.store.close()
        await store.close()
        await presence.close()


async def test_start_without_a_server_raises_unavailable() -> None:
    broker = RedisBroker(redis_support.closed_port_url())
    try:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(broker.start(Collector(), Collector()), WAIT)
    finally:
        await broker.close()
        await broker.store.close()


# --- keys and their expiry ---------------------------------------------------------------------


async def test_key_layout_and_expiry(url: str, channel: str) -> None:
    options = parse_redis_url(redis_support.with_options(url, idle_ttl="3600"))
    store = RedisStore(redis_support.with_options(url, idle_ttl="3600"))
    short = RedisStore(url, StoreLimits(history_ttl=20))
    raw = aioredis.Redis.from_url(redis_support.redis_url(), decode_responses=True)
    p = options.prefix
    try:
        stored = await store.append(
            [NewEvent(channel, "t", {"n": 1}, "2026-01-01T00:00:00.000Z", "key-1")]
        )
        event = stored[0][0]
        meta = await raw.hgetall(f"{p}:m:{channel}")
        assert meta == {"e": event.position.epoch, "t": "1"}
        [entry] = await raw.lrange(f"{p}:h:{channel}", 0, -1)
        stamp, _, json = entry.partition(" ")
        assert stamp.isdigit()
        assert json == (
            f'{{"id":"{event.id}","channel":"{channel}","type":"t","data":{{"n":1}},'
            '"timestamp":"2026-01-01T00:00:00.000Z"}'
        )
        assert await raw.get(f"{p}:i:{len(channel)}:{channel}:key-1") == json
        for key in (f"{p}:m:{channel}", f"{p}:h:{channel}"):
            assert 3500_000 < await raw.pttl(key) <= 3600_000
        assert 0 < await raw.pttl(f"{p}:i:{len(channel)}:{channel}:key-1") <= 300_000

        other = channel + "-short"
        await short.append([new(other, 1)])
        assert 20_000 < await raw.pttl(f"{p}:h:{other}") <= 21_000
        assert await raw.pttl(f"{p}:m:{other}") > 21_000
    finally:
        await store.close()
        await short.close()
        await raw.aclose()


async def test_a_forgotten_channel_gets_a_new_epoch(url: str, channel: str) -> None:
    store = RedisStore(url)
    raw = aioredis.Redis.from_url(redis_support.redis_url())
    prefix = parse_redis_url(url).prefix
    try:
        [(old, _)] = await store.append([new(channel, 1)])
        await raw.delete(f"{prefix}:m:{channel}")  # as expiry or eviction would
        [(fresh, _)] = await store.append([new(channel, 2)])
        assert fresh.position.offset == 1
        assert fresh.position.epoch != old.position.epoch
        page = await store.read(channel)
        assert page.events == [fresh]  # the old epoch's history went with its meta
        assert not (await store.read(channel, since=old.id)).complete
    finally:
        await store.close()
        await raw.aclose()


# --- URLs ------------------------------------------------------------------------------------


def test_url_options_are_ours_or_redis_pys() -> None:
    options = parse_redis_url("rediss://:pw@h:6380/2?prefix=app&socket_timeout=1&idle_ttl=60")
    assert options.prefix == "app"
    assert options.idle_ttl == 60
    assert options.url == "rediss://:pw@h:6380/2?socket_timeout=1"
    assert parse_redis_url("redis://h").prefix == "tidings"
    for bad in (
        "redis://h?prefix=",
        "redis://h?prefix=a%20b",
        "redis://h?idle_ttl=soon",
        "redis://h?idle_ttl=0",
        "redis://h?decode_responses=true",
        "x://h",
    ):
        with pytest.raises(ValueError):
            parse_redis_url(bad)


async def test_backends_by_url() -> None:
    for scheme in ("redis", "rediss"):
        url = f"{scheme}://127.0.0.1:6379/0?prefix=x"
        store = store_from_url(url, StoreLimits())
        broker = broker_from_url(url, store)
        backends = [store, broker, presence_from_url(url)]
        assert [type(backend) for backend in backends] == [RedisStore, RedisBroker, RedisPresence]
        assert isinstance(broker, RedisBroker) and broker.store is store and broker.atomic
        for backend in backends:
            assert backend is not None
            await backend.close()


async def test_a_task_stopped_in_the_middle_of_a_command_ends(url: str) -> None:
    """Stopping a hub cancels tasks that are talking to Redis, and each must then end.
    On Python 3.11 redis-py's bounded writes can drop a cancellation (see
    :mod:`tidings.tasks`): cancelled once, such a loop ran on and ``tidings serve`` did not
    exit on SIGTERM. :func:`cancel_and_wait` ends it."""
    client = connect(parse_redis_url(url).url)
    running = True

    async def busy() -> None:
        # Like the hub's loops: a command, then a wait (where a repeated cancel lands).
        while running:
            await client.get("tidings-cancel-probe")
            await asyncio.sleep(0.001)

    try:
        for turn in range(60):
            task = asyncio.create_task(busy())
            # Cancel at a different point of the command each time.
            for _ in range(turn % 23):
                await asyncio.sleep(0)
            async with asyncio.timeout(5):
                await cancel_and_wait(task)
            assert task.done(), f"turn {turn}"
    finally:
        running = False
        await client.aclose()
