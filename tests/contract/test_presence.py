"""The ``Presence`` contract (``tidings.backends.base.Presence``), run against every backend."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import MakePresence, PresenceFactory
from tidings.backends.base import Presence, PresenceEntry

TTL = 0.3  # seconds: short, because the passing of time is what these tests check
LONG = 60.0  # seconds: an entry that must not expire during a test


async def test_is_a_presence(make_presence: MakePresence) -> None:
    assert isinstance(await make_presence(), Presence)


async def test_an_unknown_channel_is_empty(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    assert await presence.get(channel) == PresenceEntry(0, ())


async def test_an_update_is_read_back(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    await presence.update("node-a", {channel: PresenceEntry(3, ("u2", "u1"))}, LONG)
    assert await presence.get(channel) == PresenceEntry(3, ("u1", "u2"))


async def test_an_empty_update_changes_nothing(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    await presence.update("node-a", {channel: PresenceEntry(1, ("u1",))}, LONG)
    await presence.update("node-a", {}, LONG)
    assert await presence.get(channel) == PresenceEntry(1, ("u1",))


async def test_nodes_are_summed_and_clients_merged(
    make_presence: MakePresence, channel: str
) -> None:
    presence = await make_presence()
    await presence.update("node-a", {channel: PresenceEntry(2, ("u1", "u3"))}, LONG)
    await presence.update("node-b", {channel: PresenceEntry(4, ("u2", "u1"))}, LONG)
    # Connections without a client id count, but name no one.
    await presence.update("node-c", {channel: PresenceEntry(1)}, LONG)
    assert await presence.get(channel) == PresenceEntry(7, ("u1", "u2", "u3"))


async def test_an_update_replaces_the_nodes_entry(
    make_presence: MakePresence, channel: str
) -> None:
    presence = await make_presence()
    await presence.update("node-a", {channel: PresenceEntry(5, ("u1", "u2"))}, LONG)
    await presence.update("node-b", {channel: PresenceEntry(1, ("u9",))}, LONG)
    await presence.update("node-a", {channel: PresenceEntry(1, ("u2",))}, LONG)
    assert await presence.get(channel) == PresenceEntry(2, ("u2", "u9"))


async def test_zero_connections_remove_the_node(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    await presence.update("node-a", {channel: PresenceEntry(2, ("u1",))}, LONG)
    await presence.update("node-b", {channel: PresenceEntry(1, ("u2",))}, LONG)
    await presence.update("node-a", {channel: PresenceEntry(0)}, LONG)
    assert await presence.get(channel) == PresenceEntry(1, ("u2",))
    await presence.update("node-b", {channel: PresenceEntry(0)}, LONG)
    assert await presence.get(channel) == PresenceEntry(0, ())


async def test_removing_an_absent_node_is_harmless(
    make_presence: MakePresence, channel: str
) -> None:
    presence = await make_presence()
    await presence.update("node-a", {channel: PresenceEntry(0)}, LONG)
    assert await presence.get(channel) == PresenceEntry(0, ())


async def test_one_update_covers_many_channels(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    others = [f"{channel}-{i}" for i in range(3)]
    await presence.update(
        "node-a", {name: PresenceEntry(i + 1, (f"u{i}",)) for i, name in enumerate(others)}, LONG
    )
    for i, name in enumerate(others):
        assert await presence.get(name) == PresenceEntry(i + 1, (f"u{i}",))
    await presence.update(
        "node-a", {others[0]: PresenceEntry(0), others[1]: PresenceEntry(7)}, LONG
    )
    assert await presence.get(others[0]) == PresenceEntry(0, ())
    assert await presence.get(others[1]) == PresenceEntry(7, ())
    assert await presence.get(others[2]) == PresenceEntry(3, ("u2",))
    assert await presence.get(channel) == PresenceEntry(0, ())


async def test_entries_expire(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    await presence.update("dying", {channel: PresenceEntry(2, ("u1",))}, TTL)
    await presence.update("alive", {channel: PresenceEntry(1, ("u2",))}, LONG)
    assert await presence.get(channel) == PresenceEntry(3, ("u1", "u2"))
    await asyncio.sleep(TTL + 0.15)
    assert await presence.get(channel) == PresenceEntry(1, ("u2",))


async def test_every_entry_of_a_dead_node_expires(
    make_presence: MakePresence, channel: str
) -> None:
    presence = await make_presence()
    await presence.update("dying", {channel: PresenceEntry(2, ("u1",))}, TTL)
    await asyncio.sleep(TTL + 0.15)
    assert await presence.get(channel) == PresenceEntry(0, ())


async def test_updating_again_keeps_an_entry_alive(
    make_presence: MakePresence, channel: str
) -> None:
    presence = await make_presence()
    ttl = 1.0  # longer than TTL: the margins below must survive a slow machine
    await presence.update("node-a", {channel: PresenceEntry(1, ("u1",))}, ttl)
    await asyncio.sleep(0.6 * ttl)
    await presence.update("node-a", {channel: PresenceEntry(1, ("u1",))}, ttl)
    await asyncio.sleep(0.6 * ttl)
    # Older than one ttl since the first update, younger since the second.
    assert await presence.get(channel) == PresenceEntry(1, ("u1",))


async def test_a_short_lived_entry_does_not_shorten_a_long_one(
    make_presence: MakePresence, channel: str
) -> None:
    presence = await make_presence()
    await presence.update("long", {channel: PresenceEntry(1, ("u1",))}, LONG)
    await presence.update("short", {channel: PresenceEntry(1, ("u2",))}, TTL)
    await asyncio.sleep(TTL + 0.15)
    assert await presence.get(channel) == PresenceEntry(1, ("u1",))


async def test_nodes_see_each_others_entries(
    presence_factory: PresenceFactory, make_presence: MakePresence, channel: str
) -> None:
    if not presence_factory.shared:
        pytest.skip("presence of this backend is one node's own")
    first, second = await make_presence(), await make_presence()
    await first.update("node-a", {channel: PresenceEntry(1, ("u1",))}, LONG)
    await second.update("node-b", {channel: PresenceEntry(2, ("u2",))}, LONG)
    for presence in (first, second):
        assert await presence.get(channel) == PresenceEntry(3, ("u1", "u2"))
    await second.update("node-a", {channel: PresenceEntry(0)}, LONG)
    assert await first.get(channel) == PresenceEntry(2, ("u2",))


async def test_client_ids_round_trip(make_presence: MakePresence, channel: str) -> None:
    presence = await make_presence()
    odd = ("caf\u00e9", "a b", 'quo"te', "\U0001f600", "x" * 300)
    await presence.update("node-a", {channel: PresenceEntry(len(odd), odd)}, LONG)
    assert await presence.get(channel) == PresenceEntry(len(odd), tuple(sorted(odd)))


# -- connection listings ---------------------------------------------------------------

ROWS = [{"id": "c1", "tenant": None, "channels": ["a", "caf\u00e9"]}, {"id": "c2"}]


async def test_a_listing_is_read_back_and_replaced(make_presence: MakePresence) -> None:
    presence = await make_presence()
    assert await presence.listings() == {}
    await presence.update_listing("node-a", ROWS, LONG)
    assert await presence.listings() == {"node-a": ROWS}
    await presence.update_listing("node-a", ROWS[1:], LONG)
    assert await presence.listings() == {"node-a": ROWS[1:]}
    await presence.update_listing("node-a", [], LONG)
    assert await presence.listings() == {}


async def test_a_dead_nodes_listing_expires(make_presence: MakePresence) -> None:
    presence = await make_presence()
    await presence.update_listing("dying", ROWS, TTL)
    await presence.update_listing("alive", ROWS[:1], LONG)
    assert await presence.listings() == {"dying": ROWS, "alive": ROWS[:1]}
    await asyncio.sleep(TTL + 0.15)
    assert await presence.listings() == {"alive": ROWS[:1]}


async def test_nodes_see_each_others_listings(
    presence_factory: PresenceFactory, make_presence: MakePresence
) -> None:
    if not presence_factory.shared:
        pytest.skip("presence of this backend is one node's own")
    first, second = await make_presence(), await make_presence()
    await first.update_listing("node-a", ROWS[:1], LONG)
    await second.update_listing("node-b", ROWS[1:], LONG)
    for presence in (first, second):
        assert await presence.listings() == {"node-a": ROWS[:1], "node-b": ROWS[1:]}


async def test_close_is_idempotent(make_presence: MakePresence) -> None:
    presence = await make_presence()
    await presence.close()
    await presence.close()


async def test_an_unreachable_presence_says_so(
    presence_factory: PresenceFactory, channel: str
) -> None:
    presence = await presence_factory.unreachable()
    if presence is None:
        pytest.skip("this presence is in-process: it cannot be unreachable")
    try:
        with pytest.raises(Exception):  # noqa: B017 - any error says "unreachable"
            await asyncio.wait_for(presence.get(channel), 10)
        with pytest.raises(Exception):  # noqa: B017
            await asyncio.wait_for(presence.update("node-a", {channel: PresenceEntry(1)}, LONG), 10)
        with pytest.raises(Exception):  # noqa: B017
            await asyncio.wait_for(presence.listings(), 10)
        with pytest.raises(Exception):  # noqa: B017
            await asyncio.wait_for(presence.update_listing("node-a", ROWS, LONG), 10)
    finally:
        await presence.close()
