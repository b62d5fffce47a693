from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.servers import RunningHub, running_hub


@pytest.fixture
async def served() -> AsyncIterator[RunningHub]:
    """A default in-memory hub served on a free port."""
    async with running_hub() as running:
        yield running
