"""A process of chaos-run subscribers: ``python -m tidings.bench.chaos_worker``.

Each subscriber is a real :class:`tidings.client.Client` (WebSocket or SSE) following a
few channels through a proxy, with a token function that mints a fresh JWT per attempt,
and records what arrives in a :class:`~tidings.bench.chaos_check.Trace` per channel.
The run spreads its subscribers over several of these processes so that the clients'
CPU is not one event loop's.

Talks JSON lines. The first line on stdin is the configuration; stdout then says
``{"ready": n, "failed": n}`` as subscriptions come up, and the process obeys commands:

- ``{"cmd": "pause", "count": k, "seconds": s}``: k subscribers stop reading for s seconds
  (slow consumers: their handlers block, so their sockets fill);
- ``{"cmd": "expire", "seconds": s}``: for s seconds every token minted is already expired;
- ``{"cmd": "check", "acked": {channel: [seq, ...]}}``: answers ``{"missing": n}``;
- ``{"cmd": "finish", "acked": …}``: answers ``{"result": …}`` and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import resource
import time
from collections import Counter
from typing import Any

import orjson

from tidings.auth.tokens import mint_token
from tidings.bench.chaos_check import Trace, Verdict
from tidings.bench.chaos_child import say, stdin_lines
from tidings.client import Backoff, Client, Event, Reset, Status, StatusChange

__all__ = ["Subscriber", "main"]


class Subscriber:
    """One client, its channels, and what it saw."""

    def __init__(
        self, name: str, url: str, transport: str, channels: list[str], worker: Worker
    ) -> None:
        self.name = name
        self.transport = transport
        self.channels = channels
        self.worker = worker
        self.traces = {channel: Trace() for channel in channels}
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._down_since: dict[str, float] = {}
        self.client = Client(
            url,
            token=self.token,
            transport=transport,
            # The client as shipped (1 s doubling to 30 s, jittered), but never giving up.
            backoff=Backoff(attempts=None),
            on_status=self.status,
            on_reset=self.reset,
            read_timeout=30.0,
            max_queue=100_000,
        )

    def token(self) -> str:
        now = time.time()
        # An expired token is what a client holding a lapsed session sends; the hub
        # refuses it (401 / close 4001) and the next attempt mints again.
        ttl = -60 if now < self.worker.expired_until else self.worker.token_ttl
        return mint_token(self.worker.secret, sub=self.name, ttl=ttl, channels=["chaos:*"])

    async def start(self) -> None:
        await self.client.connect()
        handles = [self.client.on(channel, "*", self.deliver) for channel in self.channels]
        for handle in handles:
            await handle.ready(timeout=None)

    async def deliver(self, event: Event) -> None:
        if not self.flowing.is_set():
            await self.flowing.wait()
        self.traces[event.channel].deliver(int(event.data["seq"]))

    def reset(self, reset: Reset) -> None:
        self.traces[reset.channel].reset()
        self.worker.resets[reset.reason] += 1

    def status(self, change: StatusChange) -> None:
        key = change.channel or ""
        if change.status is Status.RECONNECTING:
            self._down_since.setdefault(key, time.monotonic())
            self.worker.reasons[str(change.reason)] += 1
        elif change.status is Status.CONNECTED:
            down = self._down_since.pop(key, None)
            if down is not None:
                self.worker.reconnects.append(time.monotonic() - down)
        elif change.status is Status.FAILED:
            self.worker.reasons[f"failed: {change.reason}"] += 1

    async def pause(self, seconds: float) -> None:
        self.flowing.clear()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.flowing.set()


class _Tally(logging.Handler):
    """Counts the client's warnings by kind (a handler stopped, a hub error …)."""

    def __init__(self, counter: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        # The message without the channel names and ids, so that kinds add up.
        self.counter[
            "client: " + re.sub(r"[\w:.-]*\d[\w:.-]*", "#", record.getMessage())[:100]
        ] += 1


class Worker:
    """This process's subscribers and its tallies."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.urls: list[str] = config["urls"]
        self.secret: str = config["secret"]
        self.token_ttl: float = config.get("token_ttl", 3600)
        self.expired_until = 0.0
        self.reasons: Counter[str] = Counter()
        self.resets: Counter[str] = Counter()
        self.reconnects: list[float] = []
        self.subscribers = [
            Subscriber(
                spec["name"], self.urls[spec["node"]], spec["transport"], spec["channels"], self
            )
            for spec in config["subscribers"]
        ]
        self.ready = self.failed = 0
        client_log = logging.getLogger("tidings.client")
        client_log.addHandler(_Tally(self.reasons))
        client_log.propagate = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start_all(self, concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(subscriber: Subscriber) -> None:
            async with gate:
                try:
                    await subscriber.start()
                except Exception as exc:
                    self.failed += 1
                    self.reasons[f"subscribe: {exc!r}"[:120]] += 1
                else:
                    self.ready += 1

        reporter = asyncio.ensure_future(self._report_progress())
        try:
            await asyncio.gather(*(one(s) for s in self.subscribers))
        finally:
            reporter.cancel()
        say({"ready": self.ready, "failed": self.failed, "done": True})

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            say({"ready": self.ready, "failed": self.failed})

    def verdicts(self, acked: dict[str, list[int]]) -> dict[str, Verdict]:
        """The verdict of each transport's subscribers."""
        totals = {"websocket": Verdict(), "sse": Verdict()}
        for subscriber in self.subscribers:
            for channel, trace in subscriber.traces.items():
                totals[subscriber.transport].add(trace.verdict(acked.get(channel, ())))
        return totals

    def obey(self, command: dict[str, Any]) -> bool:
        """Carry out one command; ``False`` when it was the last."""
        kind = command.get("cmd")
        if kind == "pause":
            chosen = random.sample(self.subscribers, min(command["count"], len(self.subscribers)))
            for subscriber in chosen:
                self._spawn(subscriber.pause(command["seconds"]))
        elif kind == "expire":
            self.expired_until = time.time() + command["seconds"]
        elif kind == "check":
            verdicts = self.verdicts(command["acked"])
            say({"missing": sum(verdict.lost for verdict in verdicts.values())})
        elif kind == "finish":
            verdicts = self.verdicts(command["acked"])
            usage = resource.getrusage(resource.RUSAGE_SELF)
            say(
                {
                    "result": {
                        "verdicts": {name: v.__dict__ for name, v in verdicts.items()},
                        "reconnects": self.reconnects,
                        "reasons": dict(self.reasons),
                        "resets": dict(self.resets),
                        "max_rss_kib": usage.ru_maxrss,
                        "cpu_s": usage.ru_utime + usage.ru_stime,
                    }
                }
            )
            return False
        return True

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(s.client.close() for s in self.subscribers), *self._tasks, return_exceptions=True
        )


async def run() -> None:
    stdin = await stdin_lines()
    config = orjson.loads(await stdin.readline())
    worker = Worker(config)
    try:
        await worker.start_all(config.get("concurrency", 100))
        while True:
            line = await stdin.readline()
            if not line or not worker.obey(orjson.loads(line)):
                return
    finally:
        await worker.close()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop

            uvloop.run(run())
        except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
            asyncio.run(run())


if __name__ == "__main__":
    main()
