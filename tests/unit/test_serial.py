"""Serial keeps the effects of control messages in arrival order."""

from __future__ import annotations

import asyncio

from tidings.serial import Serial


async def test_work_runs_in_order_and_a_failure_does_not_stop_the_rest() -> None:
    serial = Serial()
    done: list[int] = []

    gate = asyncio.Event()

    async def step(n: int) -> None:
        if n == 1:
            await gate.wait()  # a slow first step must still finish first
        if n == 2:
            raise RuntimeError("boom")
        done.append(n)

    finished = asyncio.Event()

    async def last() -> None:
        finished.set()

    serial.run(step(1))
    serial.run(step(2))
    serial.run(step(3))
    serial.run(last())
    await asyncio.sleep(0)
    assert done == []
    gate.set()
    await asyncio.wait_for(finished.wait(), 5)
    assert done == [1, 3]


async def test_aclose_drops_what_has_not_started() -> None:
    serial = Serial()
    started = asyncio.Event()
    ran: list[str] = []

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async def never() -> None:
        ran.append("never")

    serial.run(hang())
    serial.run(never())
    await asyncio.wait_for(started.wait(), 5)
    await serial.aclose()
    assert ran == []
