"""Backend factories for the contract suite.

Every test in ``tests/contract`` runs once per entry of :data:`STORE_BACKENDS` or
:data:`BROKER_BACKENDS`, and uses the backends through the ``Store`` and ``Broker``
interfaces only. A new implementation joins the suite by adding one entry here:

* a **store factory** class is built once per test as ``Factory(tmp_path)``; calling it
  with :class:`~tidings.backends.base.StoreLimits` returns a started store. ``shared``
  says whether two stores one factory makes are nodes over the same storage (one SQLite
  file, one Redis database); a factory must isolate its storage from other tests (a file
  under ``tmp_path``, a random key prefix).
* a **broker factory** class is built once per test as ``Factory()``; calling it returns
  a new, not yet started broker. ``clustered`` says whether the brokers one factory makes
  are nodes of one cluster. A memory broker is a cluster of one node: two of them never
  see each other's messages, so the cross-node cases skip for it.
* ``unreachable()`` returns a backend that cannot reach its server (a closed port), or
  ``None`` when the backend has no server to lose (memory): those cases skip.
* ``aclose()`` runs after the test, once its backends are closed (drop a key prefix…).

The fixtures close every backend a test made, so tests need no cleanup of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar, Protocol

import pytest

from tidings.backends.base import Broker, Store, StoreLimits
from tidings.backends.memory import MemoryBroker, MemoryStore


class StoreFactory(Protocol):
    shared: ClassVar[bool]

    def __init__(self, tmp_path: Path) -> None: ...

    async def __call__(self, limits: StoreLimits) -> Store: ...

    async def unreachable(self) -> Store | None: ...

    async def aclose(self) -> None: ...


class BrokerFactory(Protocol):
    clustered: ClassVar[bool]

    def __init__(self) -> None: ...

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

    async def __call__(self) -> Broker:
        return MemoryBroker()

    async def unreachable(self) -> Broker | None:
        return None

    async def aclose(self) -> None:
        return None


STORE_BACKENDS = [pytest.param(MemoryStores, id="memory")]
BROKER_BACKENDS = [pytest.param(MemoryBrokers, id="memory")]

MakeStore = Callable[..., Awaitable[Store]]
MakeBroker = Callable[[], Awaitable[Broker]]


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
async def broker_factory(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    factory: BrokerFactory = request.param()
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


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses, so backends with shared storage stay isolated."""
    return f"contract:{uuid.uuid4().hex}"
