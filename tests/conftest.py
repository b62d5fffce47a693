from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import tests.servers
from tests.servers import HubProcess, RunningHub, running_hub

#: Every stream test runs on both paths: the native front of ``tidings serve`` and the ASGI
#: endpoints of ``hub.asgi_app()``.
STREAM_PATHS = ("native", "asgi")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("streams") is not None:
        metafunc.parametrize("stream_path", STREAM_PATHS, indirect=True)


@pytest.fixture(autouse=True)
def stream_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """The stream path hubs are served on in this test (``native`` unless parametrized)."""
    path: str = getattr(request, "param", "native")
    tests.servers.STREAM_PATH = path
    try:
        yield path
    finally:
        tests.servers.STREAM_PATH = "native"


@pytest.fixture
async def served() -> AsyncIterator[RunningHub]:
    """A default in-memory hub served on a free port."""
    async with running_hub() as running:
        yield running


@pytest.fixture
def processes() -> Iterator[list[HubProcess]]:
    """Every ``tidings serve`` process a test appends here is closed when it ends."""
    started: list[HubProcess] = []
    yield started
    for process in started:
        process.close()
