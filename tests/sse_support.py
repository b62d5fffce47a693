"""Reading a hub's SSE stream in tests, as an application would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from httpx_sse import ServerSentEvent

#: Frames of the hub's own that an application skips: the stream's position (a named
#: event, which `EventSource.onmessage` never sees).
CONTROL = ("position",)


async def next_event(
    events: AsyncIterator[ServerSentEvent], *, skip: tuple[str, ...] = (), timeout: float = 5.0
) -> ServerSentEvent:
    """The next frame with data that is not a position frame (nor of a type in ``skip``).

    httpx-sse also yields frames without data (``retry:``); browsers do not dispatch them.
    """
    async with asyncio.timeout(timeout):
        while True:
            event = await anext(events)
            if event.data and event.event not in CONTROL and event.event not in skip:
                return event
