"""A blocking wrapper for scripts: the async :class:`~tidings.client.Client` runs on an
event loop in a background thread; these functions block the calling thread instead.

::

    from tidings.client.sync import SyncClient, subscribe

    for event in subscribe("http://127.0.0.1:8000", "alerts"):
        print(event.type, event.data)

    with SyncClient("http://127.0.0.1:8000") as client:
        client.publish("alerts", "disk_full", {"host": "db2"})
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from tidings.client.client import Client, Subscription
from tidings.client.session import Event

__all__ = ["SyncClient", "subscribe"]

T = TypeVar("T")
_END = object()


class SyncClient:
    """A :class:`Client` driven from synchronous code (same keyword options).

    Callbacks (``on_status``, ``on_reset``, handlers) run in the background thread.
    """

    def __init__(self, url: str, *, timeout: float | None = 30.0, **options: Any) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tidings-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self.client: Client = self._call(self._open(url, options))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _open(url: str, options: dict[str, Any]) -> Client:
        client = Client(url, **options)
        await client.connect()
        return client

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def publish(self, channel: str, type: str, data: Any) -> Event:  # noqa: A002
        """Publish one event and return it as stored."""
        return self._call(self.client.publish(channel, type, data), self.timeout)

    def ping(self) -> float:
        """One round trip to the hub, in seconds."""
        return self._call(self.client.ping(), self.timeout)

    def subscribe(
        self,
        channel: str,
        *,
        types: Iterable[str] | None = None,
        since: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """Iterate over ``channel``'s events; each ``next`` waits at most ``timeout``
        seconds (``None``: forever) and raises ``TimeoutError`` after that. A
        :class:`~tidings.client.Reset` or :class:`~tidings.client.ConnectionFailed` is
        raised as in the async iterator."""

        async def start() -> Subscription:
            subscription = self.client.subscribe(channel, types=types, since=since)
            await subscription.ready()
            return subscription

        async def step(subscription: Subscription) -> Any:
            try:
                return await subscription.__anext__()
            except StopAsyncIteration:
                return _END

        subscription = self._call(start(), self.timeout)
        try:
            while True:
                item = self._call(step(subscription), timeout)
                if item is _END:
                    return
                yield item
        finally:
            if not self._closed:
                self._call(subscription.close(), self.timeout)

    def close(self) -> None:
        """Close the client and stop its thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self.client.close(), self.timeout)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def subscribe(
    url: str,
    channel: str,
    *,
    types: Iterable[str] | None = None,
    since: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Iterator[Event]:
    """Iterate over ``channel``'s events from a script; the connection closes when the
    iteration stops (``break``, or the generator being closed). ``options`` go to
    :class:`~tidings.client.Client`."""
    with SyncClient(url, **options) as client:
        yield from client.subscribe(channel, types=types, since=since, timeout=timeout)
