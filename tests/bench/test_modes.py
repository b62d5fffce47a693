"""``tidings bench --mode …``: the load generators' byte-level pieces, then every mode run
for real at a tiny size (a subprocess each, bounded in time)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tidings.bench import procstat
from tidings.bench.httpload import ResponseParser, build_post
from tidings.bench.run import cores
from tidings.bench.wsclient import (
    CLOSE,
    PING,
    TEXT,
    FrameReader,
    close_code,
    encode_frame,
    handshake,
    handshake_status,
)
from tidings.bench.wsload import Census, Subscriber

ROOT = Path(__file__).resolve().parents[2]


# -- Sans-I/O pieces ---------------------------------------------------------------------


def test_build_post_is_a_complete_keep_alive_request() -> None:
    request = build_post("127.0.0.1", 8000, "/api/v1/publish", b'{"a":1}')
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1:8000")
    assert b"Content-Length: 7" in head
    assert b"Connection: close" not in head
    assert body == b'{"a":1}'


def test_response_parser_survives_any_split() -> None:
    wire = (
        b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello"
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    for cut in range(len(wire) + 1):
        for second_cut in (cut, min(len(wire), cut + 7)):
            parser = ResponseParser()
            statuses = (
                parser.feed(wire[:cut])
                + parser.feed(wire[cut:second_cut])
                + parser.feed(wire[second_cut:])
            )
            assert statuses == [201, 429, 201], (cut, second_cut)


def test_response_parser_refuses_a_response_it_cannot_frame() -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")


def _server_frame(payload: bytes, opcode: int = TEXT, *, final: bool = True) -> bytes:
    first = (0x80 if final else 0) | opcode
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", first, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


def test_frame_reader_joins_fragments_and_passes_control_frames_through() -> None:
    big = b"x" * 70_000
    wire = (
        _server_frame(b'{"type":"connected"}')
        + _server_frame(b"abc", TEXT, final=False)
        + _server_frame(b"", PING)
        + _server_frame(b"def", 0, final=True)
        + _server_frame(b"y" * 300)
        + _server_frame(big, 0x2)
        + _server_frame(struct.pack("!H", 4005) + b"slow_consumer", CLOSE)
    )
    expected = [
        (TEXT, b'{"type":"connected"}'),
        (PING, b""),
        (TEXT, b"abcdef"),
        (TEXT, b"y" * 300),
        (0x2, big),
        (CLOSE, struct.pack("!H", 4005) + b"slow_consumer"),
    ]
    for cut in (*range(40), 400, 70_000, len(wire) - 3, len(wire)):
        reader = FrameReader()
        assert reader.feed(wire[:cut]) + reader.feed(wire[cut:]) == expected, cut
    assert close_code(expected[-1][1]) == 4005


def test_frame_reader_refuses_masked_or_oversized_frames() -> None:
    with pytest.raises(ValueError, match="masked"):
        FrameReader().feed(b"\x81\x85abcd12345")
    with pytest.raises(ValueError, match="bytes"):
        FrameReader(max_size=10).feed(_server_frame(b"z" * 11))


def _unmask(frame: bytes) -> tuple[int, bytes]:
    opcode, second = frame[0] & 0x0F, frame[1]
    assert frame[0] & 0x80 and second & 0x80  # final, masked
    length, start = second & 0x7F, 2
    if length == 126:
        (length,), start = struct.unpack_from("!H", frame, 2), 4
    elif length == 127:
        (length,), start = struct.unpack_from("!Q", frame, 2), 10
    mask, payload = frame[start : start + 4], frame[start + 4 :]
    assert len(payload) == length
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 65_535, 65_536])
def test_encode_frame_masks_any_length(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert _unmask(encode_frame(payload)) == (TEXT, payload)


def test_handshake_accept_is_checked() -> None:
    request, accept = handshake("127.0.0.1", 9, "/ws?channel=a")
    assert request.startswith(b"GET /ws?channel=a HTTP/1.1\r\n")
    assert b"Sec-WebSocket-Version: 13" in request
    good = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept
    assert handshake_status(good, accept) == 101
    assert handshake_status(good.replace(accept, b"bogus="), accept) == 0
    assert handshake_status(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0", accept) == 403


# -- the subscriber of the connections mode, fed bytes -----------------------------------


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def _subscriber() -> tuple[Subscriber, Census, _FakeTransport, bytes]:
    census = Census()
    request, accept = handshake("127.0.0.1", 9, "/ws?channel=c")
    subscriber = Subscriber(census, request, accept)
    transport = _FakeTransport()
    subscriber.connection_made(transport)
    assert transport.written == [request]
    return subscriber, census, transport, accept


async def test_subscriber_counts_itself_ready_then_counts_probes() -> None:
    subscriber, census, transport, accept = _subscriber()
    head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    subscriber.data_received(head + _server_frame(b'{"type":"connected","connection_id":"x"}'))
    assert census.ready == 0 and not subscriber.settled.done()
    subscriber.data_received(_server_frame(b'{"type":"subscribed","channel":"c"}'))
    assert census.ready == 1 and subscriber.settled.done()
    event = orjson.dumps({"type": "event", "data": {"data": {"probe": 3, "t": 17}}})
    subscriber.data_received(_server_frame(event) + _server_frame(b'{"type":"ping"}'))
    subscriber.data_received(_server_frame(b'{"type":"event","data":{"probe": 12}}'))
    assert census.received == {3: 1, 12: 1}
    assert len(census.latencies_ns) == 1
    assert _unmask(transport.written[-1]) == (TEXT, b'{"type":"pong"}')
    subscriber.data_received(_server_frame(struct.pack("!H", 4000), CLOSE))
    assert census.lost == 1 and transport.aborted


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n",
        b"ACCEPTED"
        + _server_frame(b'{"type":"error","code":"too_many_connections"}')
        + _server_frame(struct.pack("!H", 4029), CLOSE),
    ],
)
async def test_subscriber_counts_a_refusal(answer: bytes) -> None:
    subscriber, census, transport, accept = _subscriber()
    ok = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    subscriber.data_received(answer.replace(b"ACCEPTED", ok))
    assert (census.ready, census.refused, census.failed) == (0, 1, 0)
    assert subscriber.settled.done() and transport.aborted
    subscriber.connection_lost(None)
    assert (census.refused, census.failed, census.lost) == (1, 0, 0)


# -- pinning ------------------------------------------------------------------------------


@pytest.mark.skipif(len(procstat.USABLE_CORES) < 2, reason="needs two cores")
def test_a_pinned_load_generator_still_pins_its_server_to_the_other_core() -> None:
    pair = cores()
    assert pair is not None
    server_core, load_core = pair
    threads = [int(t.name) for t in Path("/proc/self/task").iterdir()]
    before = {tid: os.sched_getaffinity(tid) for tid in threads}
    child = None
    try:
        assert procstat.pin(0, load_core)  # what every mode does first
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        assert os.sched_getaffinity(child.pid) == {load_core}  # inherited
        assert procstat.pin(child.pid, server_core)
        assert os.sched_getaffinity(child.pid) == {server_core}
        assert os.sched_getaffinity(0) == {load_core}
        assert cores() == pair
    finally:
        for tid, affinity in before.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, affinity)
        if child is not None:
            child.kill()
            child.wait()


# -- every mode, for real, tiny ----------------------------------------------------------


def _bench(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    completed = subprocess.run(
        [sys.executable, "-m", "tidings", "bench", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    stderr = completed.stderr.decode(errors="replace")
    report = orjson.loads(completed.stdout) if completed.stdout.strip() else {}
    return completed.returncode, report, stderr[-3000:]


def test_unknown_mode_is_refused() -> None:
    status, _, stderr = _bench("--mode", "nope", timeout=30)
    assert status == 2
    assert "--mode" in stderr


@pytest.mark.timeout(90)
def test_publish_mode_against_the_handrolled_baseline() -> None:
    status, report, stderr = _bench(
        "--mode", "publish", "--duration", "0.5", "--connections", "2", "--batch", "10",
        timeout=85,
    )  # fmt: skip
    assert status == 0, stderr
    assert report["mode"] == "publish" and report["ok"] is True
    results = {(r["server"], r["kind"]): r for r in report["results"]}
    assert set(results) == {
        ("tidings", "single"),
        ("tidings", "batch 10"),
        ("handrolled", "single"),
    }
    for (server, kind), r in results.items():
        where = f"{server} {kind}"
        assert r["requests"] > 0 and r["ok"] == r["requests"] and r["failed"] == 0, where
        assert r["statuses"] == {"201": r["requests"]}, where
        assert r["events_per_s"] == pytest.approx(r["requests_per_s"] * r["events_per_request"])
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] < 5000, where
        assert r["server_cpu_s"] > 0 and r["cpu_us_per_request"] > 0, where
        assert r["loadgen_cpu_percent"] > 0, where
        assert r["errors"] == [], where
    assert results[("tidings", "batch 10")]["events_per_request"] == 10
    assert report["baseline"] == "handrolled"
    ratios = {(r["server"], r["kind"]): r for r in report["ratios"]}
    assert set(ratios) == {("tidings", "single"), ("tidings", "batch 10")}
    for ratio in ratios.values():
        assert ratio["events_per_s"] > 0 and ratio["baseline"] == "handrolled single"


@pytest.mark.timeout(60)
def test_inprocess_mode() -> None:
    status, report, stderr = _bench(
        "--mode", "inprocess", "--duration", "0.3", "--batch", "10", timeout=55
    )
    assert status == 0, stderr
    single, batch = report["results"]
    assert single["kind"] == "publish" and single["events_per_call"] == 1
    assert batch["kind"] == "publish_many 10" and batch["events"] == batch["calls"] * 10
    for r in (single, batch):
        assert r["calls"] > 0 and r["events_per_s"] > 0 and r["cpu_us_per_event"] > 0
        assert 0.25 < r["wall_s"] < 5
    assert report["store"] == "memory://"
    assert report["published_total"] >= single["events"] + batch["events"]


@pytest.mark.timeout(90)
def test_connections_mode_every_connection_receives_every_event() -> None:
    status, report, stderr = _bench(
        "--mode", "connections", "--subscribers", "50", "--events", "3", timeout=85
    )
    assert status == 0, stderr
    r = report["result"]
    assert (r["subscribers"], r["connected"], r["refused"], r["failed"], r["lost"]) == (
        50, 50, 0, 0, 0,
    )  # fmt: skip
    assert r["connect_s"] > 0 and r["connects_per_s"] > 0
    assert 0 < r["connect_ms"]["p50"] <= r["connect_ms"]["p99"]
    assert r["server_rss_after_bytes"] > 0
    assert (
        r["open_files"]["soft"] >= r["open_files"]["needed"]
        or r["open_files"]["hard"] < (r["open_files"]["needed"])
    )
    assert [p["probe"] for p in r["probes"]] == [0, 1, 2]
    for p in r["probes"]:
        assert p["publish_status"] == 201
        assert p["expected"] == p["received"] == 50 and p["all_received"] is True
        assert p["ms_to_last_delivery"] > 0
    assert r["deliveries"] == 150
    assert r["errors"] == []


@pytest.mark.timeout(90)
def test_connections_mode_fails_when_connections_do_not_settle() -> None:
    # The bench lifts the hub's connection limits, so a real refusal cannot be provoked
    # from the command line; a handshake deadline far too short for 50 handshakes can be.
    status, report, _ = _bench(
        "--mode", "connections", "--subscribers", "50", "--events", "1",
        "--connect-timeout", "0.001", timeout=85,
    )  # fmt: skip
    assert status == 1
    assert report["ok"] is False
    r = report["result"]
    assert r["connected"] < 50
    assert r["refused"] + r["failed"] == 50 - r["connected"]


@pytest.mark.timeout(90)
def test_replay_mode() -> None:
    status, report, stderr = _bench("--mode", "replay", "--repetitions", "10", timeout=85)
    assert status == 0, stderr
    assert report["missed_events"] == 100 and report["repetitions"] == 10
    memory, sqlite, network = report["results"]
    assert memory["where"].startswith("in process, memory")
    assert sqlite["where"].startswith("in process, sqlite")
    assert network["where"].startswith("over the network")
    for r in (memory, sqlite, network):
        assert 0 < r["ms"]["p50"] <= r["ms"]["p99"] <= r["ms"]["max"] < 1000, r["where"]
        assert r["server_cpu_ms_per_resume"] > 0, r["where"]
    assert network["ping_rtt_ms"]["p50"] > 0
    assert network["subscribe_to_last_event_ms"]["p50"] >= network["ms"]["p50"]
