"""``tidings bench --mode chaos``: its checker and fault plan as units, its proxy over real
sockets, then the 60-second run itself: three nodes, Redis, 300 subscribers, every fault."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.redis_support import no_redis
from tidings.bench.chaos_check import Trace, Verdict
from tidings.bench.chaos_plan import KINDS, plan
from tidings.bench.chaos_proxy import Proxy

ROOT = Path(__file__).resolve().parents[2]


# -- the checker ---------------------------------------------------------------------------


def test_every_acknowledged_event_once_in_order_is_clean() -> None:
    trace = Trace()
    for seq in range(5):
        trace.deliver(seq)
    verdict = trace.verdict(range(5))
    assert verdict == Verdict(delivered=5)
    assert verdict.clean


def test_a_missing_event_is_lost_unless_a_reset_announced_its_gap() -> None:
    trace = Trace()
    for seq in (0, 1, 3):
        trace.deliver(seq)
    assert trace.verdict(range(4)).lost == 1  # 2 never came, nothing was said
    assert trace.missing(range(4)) == 1

    announced = Trace()
    announced.deliver(0)
    announced.deliver(1)
    announced.reset()
    announced.deliver(4)
    verdict = announced.verdict(range(6))
    # 2 and 3 fell in the announced gap; 5 came after the reset and is simply lost.
    assert (verdict.gap, verdict.lost, verdict.resets) == (2, 1, 1)
    assert not verdict.clean


def test_a_reset_with_nothing_after_it_covers_the_rest() -> None:
    trace = Trace()
    trace.deliver(0)
    trace.reset()
    assert trace.verdict(range(3)) == Verdict(delivered=1, gap=2, resets=1)


def test_duplicates_and_disorder_are_counted_and_unacknowledged_apart() -> None:
    trace = Trace()
    for seq in (0, 2, 1, 2, 7):
        trace.deliver(seq)
    verdict = trace.verdict(range(3))
    assert (verdict.duplicates, verdict.out_of_order, verdict.unacknowledged) == (1, 1, 1)
    assert verdict.lost == 0
    assert not verdict.clean


def test_verdicts_add_up() -> None:
    total = Verdict(delivered=1)
    total.add(Verdict(delivered=2, lost=1, resets=3))
    assert total == Verdict(delivered=3, lost=1, resets=3)


# -- the fault plan ------------------------------------------------------------------------


def test_a_one_minute_plan_has_every_fault_and_ends_quiet() -> None:
    faults = plan(60, 3)
    assert {fault.kind for fault in faults} == set(KINDS)
    assert all(3 <= fault.at <= 60 - 8 for fault in faults)
    kills = [fault.node for fault in faults if fault.kind == "kill_node"]
    assert kills == sorted(set(kills))  # a different node each time
    assert plan(5, 3) == []
    with pytest.raises(ValueError, match="one node"):
        plan(60, 0)


def test_the_killed_node_goes_round_the_cluster() -> None:
    kills = [fault.node for fault in plan(600, 3) if fault.kind == "kill_node"]
    assert kills[:4] == [0, 1, 2, 0]


# -- the proxy, over real sockets ----------------------------------------------------------


async def test_the_proxy_relays_then_cuts_every_connection() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = Proxy(upstream.sockets[0].getsockname()[1])
    port = await proxy.start()
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"hello"
            assert proxy.connections == 1
            assert proxy.cut() == 1
            assert await reader.read(1024) == b""  # cut: the client sees its end
            writer.close()

            upstream.close()
            await upstream.wait_closed()
            # The node is down: the proxy accepts and closes at once.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await reader.read(1024) == b""
            writer.close()
    finally:
        await proxy.close()


# -- the run ---------------------------------------------------------------------------------


@pytest.mark.timeout(480)
def test_one_minute_of_faults_loses_duplicates_and_reorders_nothing() -> None:
    if shutil.which("redis-server") is None:
        no_redis("the chaos run starts its own redis-server, which is not on PATH")
    completed = subprocess.run(
        [
            sys.executable, "-m", "tidings", "bench", "--mode", "chaos",
            "--subscribers", "300", "--duration", "60", "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=460,
        check=False,
    )  # fmt: skip
    stderr = completed.stderr.decode(errors="replace")[-4000:]
    assert completed.stdout.strip(), stderr
    report = orjson.loads(completed.stdout)
    verdict = report["verdict"]
    assert (verdict["lost"], verdict["duplicates"], verdict["out_of_order"]) == (0, 0, 0), stderr
    assert report["failed_to_subscribe"] == 0
    assert set(report["injected"]) == set(KINDS)
    assert all(count >= 1 for count in report["injected"].values())
    assert report["acknowledged"] > 300
    # WebSocket subscribers follow 3 of the 10 channels, SSE ones 1: 60 deliveries an event.
    assert verdict["delivered"] >= 50 * report["acknowledged"]
    assert report["node_tracebacks"] == []
    assert report["reconnect_s"]["count"] > 300  # the cuts alone reconnect everyone
    # A reset may only come from a bound the run configures; it sets none it can reach.
    assert verdict["resets"] == 0, report["resets"]
    assert all(rss > 0 for rss in report["node_max_rss_bytes"])
    assert report["ok"] is True
    assert completed.returncode == 0
