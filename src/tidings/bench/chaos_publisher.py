"""The publisher of the chaos run: per-channel sequence numbers, acknowledged or not.

One task per channel publishes ``{"seq": n}`` events in turn, each over HTTP to the next
node. A publish that gets no 201 (a node killed mid-request, Redis restarting: 503) is
sent again with the same ``Idempotency-Key`` to the next node until it is acknowledged,
so a retry never makes a second event, and the next number waits for it: the order of a
channel's events is the order of their numbers. Only acknowledged numbers count as
promised to subscribers; one given up on after ``give_up`` seconds is recorded apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter

import httpx

__all__ = ["SequencedPublisher"]


class SequencedPublisher:
    """Publishes ``rate`` events per second in all, spread over ``channels``."""

    def __init__(
        self,
        node_urls: list[str],
        channels: list[str],
        *,
        api_key: str,
        rate: float,
        give_up: float = 60.0,
        pad: int = 0,
    ) -> None:
        self.node_urls = node_urls
        self.channels = channels
        self.api_key = api_key
        self.rate = rate
        self.give_up = give_up
        self.pad = "x" * pad
        #: channel -> the acknowledged sequence numbers, in order.
        self.acknowledged: dict[str, list[int]] = {channel: [] for channel in channels}
        #: Sequence numbers given up on (never acknowledged), per channel.
        self.abandoned: dict[str, list[int]] = {channel: [] for channel in channels}
        #: Failed attempts by kind (``503``, ``ConnectError`` …); each was retried.
        self.failures: Counter[str] = Counter()
        self.latencies_s: list[float] = []
        self._nodes = itertools.cycle(range(len(node_urls)))

    @property
    def published(self) -> int:
        return sum(len(seqs) for seqs in self.acknowledged.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; each channel's last publish is finished."""
        limits = httpx.Limits(max_connections=len(self.channels) * 2)
        async with httpx.AsyncClient(timeout=5.0, limits=limits, trust_env=False) as http:
            await asyncio.gather(*(self._channel(http, channel, stop) for channel in self.channels))

    async def _channel(self, http: httpx.AsyncClient, channel: str, stop: asyncio.Event) -> None:
        interval = len(self.channels) / self.rate
        next_at = time.monotonic()
        for seq in itertools.count():
            if stop.is_set():
                return
            if await self._publish(http, channel, seq):
                self.acknowledged[channel].append(seq)
            else:
                self.abandoned[channel].append(seq)
            next_at = max(next_at + interval, time.monotonic() - interval)
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _publish(self, http: httpx.AsyncClient, channel: str, seq: int) -> bool:
        body = {"channel": channel, "type": "tick", "data": {"seq": seq, "pad": self.pad}}
        headers = {"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": f"{channel}:{seq}"}
        started = time.monotonic()
        deadline = started + self.give_up
        pause = 0.05
        while time.monotonic() < deadline:
            url = self.node_urls[next(self._nodes)] + "/api/v1/publish"
            try:
                response = await http.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                self.failures[type(exc).__name__] += 1
            else:
                if response.status_code == 201:
                    self.latencies_s.append(time.monotonic() - started)
                    return True
                self.failures[str(response.status_code)] += 1
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)
        return False
