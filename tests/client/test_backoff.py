"""The reconnect schedule, checked with an injected clock: no real sleeping."""

from __future__ import annotations

import asyncio

import pytest

from tests.servers import free_port
from tidings.client import Backoff, Client, ConnectionFailed, Status, StatusChange


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, lambda: 0.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    # jitter=0.5: the random factor spans [0.5, 1].
    assert backoff.delay(3, lambda: 0.999999) == pytest.approx(4.0, abs=1e-5)
    assert backoff.delay(3, lambda: 0.5) == 6.0
    assert not backoff.exhausted(9) and backoff.exhausted(10)
    assert not Backoff(attempts=None).exhausted(10**6)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_reconnect_schedule_follows_the_backoff_then_fails(transport: str) -> None:
    slept: list[float] = []
    statuses: list[StatusChange] = []
    randoms = iter([0.0, 1.0, 0.5] * 10)

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    backoff = Backoff(initial=0.5, factor=3.0, max=10.0, jitter=0.2, attempts=6)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with Client(
        url,
        transport=transport,
        backoff=backoff,
        sleep=fake_sleep,
        random=lambda: next(randoms),
        on_status=statuses.append,
        open_timeout=2,
    ) as client:
        sub = client.subscribe("alerts")
        with pytest.raises(ConnectionFailed) as caught:
            async with asyncio.timeout(20):
                await sub.__anext__()
        assert caught.value.reason == "attempts_exhausted"
        assert client.status is Status.FAILED
    bases = [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]
    factors = [1.0, 0.8, 0.9, 1.0, 0.8, 0.9]
    assert slept == pytest.approx([b * f for b, f in zip(bases, factors, strict=True)])
    kinds = [s.status for s in statuses]
    assert kinds == [Status.CONNECTING] + [Status.RECONNECTING] * 6 + [Status.FAILED, Status.CLOSED]
    reconnecting = [s for s in statuses if s.status is Status.RECONNECTING]
    assert [s.attempt for s in reconnecting] == [1, 2, 3, 4, 5, 6]
    assert [s.delay for s in reconnecting] == slept


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_connection_closed_right_after_it_opened_backs_off_then_fails(
    transport: str,
) -> None:
    """Connected, then closed at once (as with a token at its expiry): not a working
    connection, so the schedule goes on instead of starting over each time."""
    from tests.servers import running_hub

    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        await asyncio.sleep(0)

    async with running_hub() as served:
        served.hub.on_connect(lambda connection: connection.close("server_shutdown"))
        backoff = Backoff(initial=1.0, factor=2.0, max=4.0, jitter=0.0, attempts=4)
        async with Client(
            served.url, transport=transport, backoff=backoff, sleep=fake_sleep
        ) as client:
            sub = client.subscribe("alerts")
            with pytest.raises(ConnectionFailed) as caught:
                async with asyncio.timeout(10):
                    await sub.__anext__()
    assert caught.value.reason == "attempts_exhausted"
    assert slept == [1.0, 2.0, 4.0, 4.0]
    assert served.hub.counters.connections_opened == 5
