"""Backend factories for the contract suite.

Every test in ``tests/contract`` runs once per entry of :data:`STORE_BACKENDS`,
:data:`BROKER_BACKENDS` or :data:`PRESENCE_BACKENDS`, and uses the backends through the
``Store``, ``Broker`` and ``Presence`` interfaces only. A new implementation joins the
suite by adding one entry here:

* a **store factory** class is built once per test as ``Factory(tmp_path)``; calling it
  with :class:`~tidings.backends.base.StoreLimits` returns a started store. ``shared``
  says whether two stores one factory makes are nodes over the same storage (one SQLite
  file, one Redis database); a factory must isolate its storage from other tests (a file
  under ``tmp_path``, a random key prefix).
* a **broker factory** class is built once per test as ``Factory(tmp_path)``; calling it
  returns a new, not yet started broker over a store of its own kind (a broker owns
  "append, then publish"). ``clustered`` says whether the brokers one factory makes are
  nodes of one cluster, over one shared store. A memory broker is a cluster of one node:
  two of them never see each other's messages, so the cross-node cases skip for it.
  Brokers run over each store they are used with: memory over memory and over SQLite,
  Redis over Redis (the store publishes atomically) and over SQLite.
* a **presence factory** class is built once per test as ``Factory()``; calling it
  returns presence as one more node sees it. ``shared`` says whether those nodes share
  their entries (one Redis database); a memory presence is a node's own.
* ``unreachable()`` returns a backend that cannot reach its server (a closed port), or
  ``None`` when the backend has no server to lose (memory): those cases skip.
* ``aclose()`` runs after the test, once its backends are closed (drop a key prefix…).

The fixtures close every backend a test made, so tests need no cleanup of their own.
Redis factories find their server through :func:`tests.redis_support.redis_url`: without
one, their cases skip (or fail, with ``TIDINGS_TEST_REQUIRE_REDIS=1``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar, Protocol

import pytest

from tests import redis_support
from tidings.backends.base import Broker, Presence, Store, StoreLimits
from tidings.backends.memory import MemoryBroker, MemoryPresence, MemoryStore


class StoreFactory(Protocol):
    shared: ClassVar[bool]

    def __init__(self, tmp_path: Path) -> None: ...

    async def __call__(self, limits: StoreLimits) -> Store: ...

    async def unreachable(self) -> Store | None: ...

    async def aclose(self) -> None: ...


class BrokerFactory(Protocol):
    clustered: ClassVar[bool]

    def __init__(self, tmp_path: Path) -> None: ...

    async def __call__(self) -> Broker: ...

    async def unreachable(self) -> Broker | None: ...

    async def aclose(self) -> None: ...


class MemoryStores:
    shared: ClassVar[bool] = False

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    async def __call__(self, limits: StoreLimits) -> Store:
        return MemoryStore(limits)

    async def unreachable(self) -> Store | None:
        return None

    async def aclose(self) -> None:
        return None


class MemoryBrokers:
    clustered: ClassVar[bool] = False

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    async def __call__(self) -> Broker:
        return MemoryBroker(MemoryStore())

    async def unreachable(self) -> Broker | None:
        return None

    async def aclose(self) -> None:
        return None


class SQLiteStores:
    """Stores on one SQLite file under ``tmp_path``: two of them are two hub processes."""

    shared: ClassVar[bool] = True

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "contract.db"
        self.gone = tmp_path / "gone.db"

    async def __call__(self, limits: StoreLimits) -> Store:
        from tidings.backends.sqlite import SQLiteStore

        store = SQLiteStore(self.path, limits)
        await store.ping()
        return store

    async def unreachable(self) -> Store | None:
        # A store whose file was deleted under it: its writes would be lost on restart.
        from tidings.backends.sqlite import SQLiteStore

        store = SQLiteStore(self.gone, StoreLimits())
        await store.ping()
        self.gone.unlink()
        return store

    async def aclose(self) -> None:
        return None


class PresenceFactory(Protocol):
    shared: ClassVar[bool]

    def __init__(self) -> None: ...

    async def __call__(self) -> Presence: ...

    async def unreachable(self) -> Presence | None: ...

    async def aclose(self) -> None: ...


class MemoryPresences:
    shared: ClassVar[bool] = False

    async def __call__(self) -> Presence:
        return MemoryPresence()

    async def unreachable(self) -> Presence | None:
        return None

    async def aclose(self) -> None:
        return None


class _RedisPrefix:
    """One Redis key prefix per test (skips the test when there is no Redis)."""

    def __init__(self) -> None:
        self.server = redis_support.redis_url()
        self.prefix = redis_support.unique_prefix()
        self.url = redis_support.with_options(self.server, prefix=self.prefix)

    async def aclose(self) -> None:
        await redis_support.delete_prefix(self.server, self.prefix)


class RedisStores(_RedisPrefix):
    shared: ClassVar[bool] = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()

    async def __call__(self, limits: StoreLimits) -> Store:
        from tidings.backends.redis_store import RedisStore

        store = RedisStore(self.url, limits)
        await store.ping()
        return store

    async def unreachable(self) -> Store | None:
        from tidings.backends.redis_store import RedisStore

        return RedisStore(redis_support.closed_port_url())


class MemoryBrokersOverSQLite(MemoryBrokers):
    """A memory broker over a SQLite store: one node whose appends await."""

    async def __call__(self) -> Broker:
        from tidings.backends.sqlite import SQLiteStore

        return MemoryBroker(SQLiteStore(self.tmp_path / "broker.db", StoreLimits()))


class RedisBrokers(_RedisPrefix):
    clustered: ClassVar[bool] = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.tmp_path = tmp_path

    def _store(self) -> Store:
        from tidings.backends.redis_store import RedisStore

        return RedisStore(self.url, StoreLimits())

    async def __call__(self) -> Broker:
        from tidings.backends.redis_broker import RedisBroker

        return RedisBroker(self.url, self._store())

    async def unreachable(self) -> Broker | None:
        from tidings.backends.redis_broker import RedisBroker

        url = redis_support.closed_port_url()
        return RedisBroker(url, _unreachable_redis_store(url))


class RedisBrokersOverSQLite(RedisBrokers):
    """Redis pub/sub over a SQLite store the nodes share: published after stored."""

    def _store(self) -> Store:
        from tidings.backends.sqlite import SQLiteStore

        return SQLiteStore(self.tmp_path / "shared.db", StoreLimits())

    async def unreachable(self) -> Broker | None:
        from tidings.backends.redis_broker import RedisBroker

        return RedisBroker(redis_support.closed_port_url(), self._store())


def _unreachable_redis_store(url: str) -> Store:
    from tidings.backends.redis_store import RedisStore

    return RedisStore(url, StoreLimits())


class RedisPresences(_RedisPrefix):
    shared: ClassVar[bool] = True

    async def __call__(self) -> Presence:
        from tidings.backends.redis import RedisPresence

        return RedisPresence(self.url)

    async def unreachable(self) -> Presence | None:
        from tidings.backends.redis import RedisPresence

        return RedisPresence(redis_support.closed_port_url())


STORE_BACKENDS = [
    pytest.param(MemoryStores, id="memory"),
    pytest.param(SQLiteStores, id="sqlite"),
    pytest.param(RedisStores, id="redis", marks=pytest.mark.redis),
]
BROKER_BACKENDS = [
    pytest.param(MemoryBrokers, id="memory"),
    pytest.param(MemoryBrokersOverSQLite, id="memory+sqlite"),
    pytest.param(RedisBrokers, id="redis", marks=pytest.mark.redis),
    pytest.param(RedisBrokersOverSQLite, id="redis+sqlite", marks=pytest.mark.redis),
]
PRESENCE_BACKENDS = [
    pytest.param(MemoryPresences, id="memory"),
    pytest.param(RedisPresences, id="redis", marks=pytest.mark.redis),
]

MakeStore = Callable[..., Awaitable[Store]]
MakeBroker = Callable[[], Awaitable[Broker]]
MakePresence = Callable[[], Awaitable[Presence]]


@pytest.fixture(params=STORE_BACKENDS)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    factory: StoreFactory = request.param(tmp_path)
    yield factory
    await factory.aclose()


@pytest.fixture
async def make_store(store_factory: StoreFactory) -> AsyncIterator[MakeStore]:
    """``await make_store(history_size=…, …)``: a started store with those limits."""
    made: list[Store] = []

    async def make(**limits: float | int | None) -> Store:
        store = await store_factory(StoreLimits(**limits))  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    """A started store with default limits."""
    return await make_store()


@pytest.fixture(params=BROKER_BACKENDS)
async def broker_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BrokerFactory]:
    factory: BrokerFactory = request.param(tmp_path)
    yield factory
    await factory.aclose()


@pytest.fixture
async def make_broker(broker_factory: BrokerFactory) -> AsyncIterator[MakeBroker]:
    """``await make_broker()``: a new node of the test's cluster, not yet started."""
    made: list[Broker] = []

    async def make() -> Broker:
        broker = await broker_factory()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()
        await broker.store.close()


@pytest.fixture(params=PRESENCE_BACKENDS)
async def presence_factory(request: pytest.FixtureRequest) -> AsyncIterator[PresenceFactory]:
    factory: PresenceFactory = request.param()
    yield factory
    await factory.aclose()


@pytest.fixture
async def make_presence(presence_factory: PresenceFactory) -> AsyncIterator[MakePresence]:
    """``await make_presence()``: presence as one more node of the test's cluster sees it."""
    made: list[Presence] = []

    async def make() -> Presence:
        presence = await presence_factory()
        made.append(presence)
        return presence

    yield make
    for presence in made:
        await presence.close()


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses, so backends with shared storage stay isolated."""
    return f"contract:{uuid.uuid4().hex}"
