"""The ``Broker`` contract (``tidings.backends.base.Broker``), run against every broker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, TypeVar

import pytest

from tests.contract.conftest import BrokerFactory, MakeBroker
from tidings.backends.base import Broker, NewEvent
from tidings.core.events import Event
from tidings.errors import Unavailable

T = TypeVar("T")
WAIT = 5.0  # seconds: a bound on every wait, not a pause


class Collector(Generic[T]):
    """A sink that remembers what it was handed and lets a test await a count."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._arrived = asyncio.Event()

    def __call__(self, item: T) -> None:
        self.items.append(item)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[T]:
        async with asyncio.timeout(WAIT):
            while len(self.items) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.items


class Node:
    """A started broker and what it received."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.events: Collector[Event] = Collector()
        self.controls: Collector[dict[str, Any]] = Collector()

    async def start(self) -> Node:
        await self.broker.start(self.events, self.controls)
        return self


def make_events(channel: str, first: int, count: int, key: str | None = None) -> list[NewEvent]:
    return [
        NewEvent(channel, "t", {"n": n, "text": "caf\u00e9"}, "2026-01-01T00:00:00.000Z", key)
        for n in range(first, first + count)
    ]


def of(channel: str, events: list[Event]) -> list[Event]:
    return [event for event in events if event.channel == channel]


async def publish(broker: Broker, events: list[NewEvent]) -> list[Event]:
    """Publish through ``broker``; the events it stored now, checked against what was sent."""
    stored = await broker.publish(events)
    assert [(e.channel, e.type, e.data) for e, _ in stored] == [
        (n.channel, n.type, n.data) for n in events
    ]
    return [event for event, created in stored if created]


async def test_is_a_broker(make_broker: MakeBroker) -> None:
    assert isinstance(await make_broker(), Broker)


async def test_published_events_reach_on_event_in_order(
    make_broker: MakeBroker, channel: str
) -> None:
    node = await Node(await make_broker()).start()
    sent = await publish(node.broker, make_events(channel, 1, 3))
    assert len(sent) == 3
    assert await node.events.wait_for(3) == sent
    offsets = [event.position.offset for event in sent]
    assert offsets == list(range(offsets[0], offsets[0] + 3))


async def test_what_is_published_is_in_the_store(make_broker: MakeBroker, channel: str) -> None:
    node = await Node(await make_broker()).start()
    sent = await publish(node.broker, make_events(channel, 1, 2))
    page = await node.broker.store.read(channel, limit=10)
    assert page.events == sent
    assert page.position == sent[-1].position


async def test_an_idempotent_replay_is_returned_not_handed_on(
    make_broker: MakeBroker, channel: str
) -> None:
    node = await Node(await make_broker()).start()
    first = await publish(node.broker, make_events(channel, 1, 1, key="k1"))
    again = await node.broker.publish(make_events(channel, 1, 1, key="k1"))
    assert again == [(first[0], False)]
    marker = await publish(node.broker, make_events(channel, 2, 1))
    assert await node.events.wait_for(2) == [*first, *marker]


async def test_a_cancelled_publish_is_never_half_done(
    make_broker: MakeBroker, channel: str
) -> None:
    node = await Node(await make_broker()).start()
    task = asyncio.create_task(node.broker.publish(make_events(channel, 1, 1)))
    await asyncio.sleep(0)  # let it start; then its caller goes away
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Stored, so handed on: whichever way the cancellation fell, the two agree.
    (delivered,) = await node.events.wait_for(1)
    page = await node.broker.store.read(channel, limit=10)
    assert page.events == [delivered]


async def test_order_is_kept_across_publishes_and_channels(
    make_broker: MakeBroker, channel: str
) -> None:
    node = await Node(await make_broker()).start()
    other = channel + "-other"
    sent: list[Event] = []
    for batch in range(20):
        events = [*make_events(channel, 3 * batch + 1, 3), *make_events(other, batch + 1, 1)]
        sent += await publish(node.broker, events)
    received = await node.events.wait_for(len(sent))
    assert len(received) == len(sent)
    assert of(channel, received) == of(channel, sent)
    assert of(other, received) == of(other, sent)


async def test_an_empty_publish_delivers_nothing(make_broker: MakeBroker, channel: str) -> None:
    node = await Node(await make_broker()).start()
    assert await node.broker.publish([]) == []
    marker = await publish(node.broker, make_events(channel, 1, 1))
    assert await node.events.wait_for(1) == marker


async def test_control_messages_reach_on_control(make_broker: MakeBroker, channel: str) -> None:
    node = await Node(await make_broker()).start()
    message = {"type": "disconnect_client", "client_id": channel, "reason": "token_revoked"}
    await node.broker.publish_control(message)
    assert await node.controls.wait_for(1) == [message]
    assert node.events.items == []


async def test_events_and_controls_are_kept_apart(make_broker: MakeBroker, channel: str) -> None:
    node = await Node(await make_broker()).start()
    await node.broker.publish_control({"type": "a", "n": 1})
    events = await publish(node.broker, make_events(channel, 1, 2))
    await node.broker.publish_control({"type": "b", "n": [1, "x", None]})
    assert await node.events.wait_for(2) == events
    controls = await node.controls.wait_for(2)
    assert sorted(controls, key=lambda message: str(message["type"])) == [
        {"type": "a", "n": 1},
        {"type": "b", "n": [1, "x", None]},
    ]


async def test_events_reach_every_node_in_order(
    broker_factory: BrokerFactory, make_broker: MakeBroker, channel: str
) -> None:
    if not broker_factory.clustered:
        pytest.skip("a broker of this backend is a cluster of one node")
    first = await Node(await make_broker()).start()
    second = await Node(await make_broker()).start()
    from_first: list[Event] = []
    from_second: list[Event] = []
    for i in range(10):
        from_first += await publish(first.broker, make_events(channel, i, 1))
        from_second += await publish(second.broker, make_events(channel + "-b", i, 1))
    for node in (first, second):
        received = await node.events.wait_for(20)
        assert of(channel, received) == from_first
        assert of(channel + "-b", received) == from_second


async def test_one_channel_published_from_every_node_is_one_order(
    broker_factory: BrokerFactory, make_broker: MakeBroker, channel: str
) -> None:
    if not broker_factory.clustered:
        pytest.skip("a broker of this backend is a cluster of one node")
    nodes = [await Node(await make_broker()).start() for _ in range(2)]
    batches = await asyncio.gather(
        *(publish(nodes[i % 2].broker, make_events(channel, i, 1)) for i in range(20))
    )
    stored = sorted((e for batch in batches for e in batch), key=lambda e: e.position.offset)
    offsets = [event.position.offset for event in stored]
    assert offsets == list(range(offsets[0], offsets[0] + 20))
    for node in nodes:
        received = of(channel, await node.events.wait_for(20))
        # Every node gets them all once; the hub's sequencer restores position order
        # where a store that is not atomic with the broker lets them interleave.
        assert sorted(received, key=lambda e: e.position.offset) == stored


async def test_control_messages_reach_every_node(
    broker_factory: BrokerFactory, make_broker: MakeBroker, channel: str
) -> None:
    if not broker_factory.clustered:
        pytest.skip("a broker of this backend is a cluster of one node")
    first = await Node(await make_broker()).start()
    second = await Node(await make_broker()).start()
    message = {"type": "disconnect_client", "client_id": channel}
    await second.broker.publish_control(message)
    for node in (first, second):
        assert await node.controls.wait_for(1) == [message]


async def test_ping(make_broker: MakeBroker) -> None:
    node = await Node(await make_broker()).start()
    await node.broker.ping()


async def test_close_is_idempotent(make_broker: MakeBroker) -> None:
    node = await Node(await make_broker()).start()
    await node.broker.close()
    await node.broker.close()


async def test_an_unreachable_broker_says_so(broker_factory: BrokerFactory, channel: str) -> None:
    broker = await broker_factory.unreachable()
    if broker is None:
        pytest.skip("this broker is in-process: it cannot be unreachable")
    try:
        # What start does without a server is the backend's choice (fail, or retry in the
        # background); ping and publish must not pretend all is well.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.start(Collector(), Collector()), WAIT)
        with pytest.raises(Exception):  # noqa: B017 - any error says "unreachable"
            await asyncio.wait_for(broker.ping(), WAIT)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(broker.publish(make_events(channel, 1, 1)), WAIT)
    finally:
        await broker.close()
        await broker.store.close()
