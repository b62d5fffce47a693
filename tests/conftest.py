from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.servers import HubProcess, RunningHub, running_hub


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
