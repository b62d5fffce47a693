"""``tidings bench``: its byte-level readers, and one tiny end-to-end run against tidings
and the hand-rolled baseline over both transports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tidings.bench.load import find_stamp
from tidings.bench.publisher import body_maker
from tidings.bench.sse import ChunkedDecoder, FrameSplitter, data_lines, parse_head

ROOT = Path(__file__).resolve().parents[2]


def test_chunked_decoder_survives_any_split() -> None:
    wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    for cut in range(len(wire) + 1):
        decoder = ChunkedDecoder()
        body = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert body == b"hello, world"
        assert decoder.finished


def test_frame_splitter_keeps_partial_frames() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"retry: 3000\n\n: conn") == [b"retry: 3000"]
    assert splitter.feed(b"ected\r\n\r\ndata: {}\n") == [b": connected"]
    assert splitter.feed(b"\n") == [b"data: {}"]
    assert data_lines(b"id: 1\ndata: a\ndata:b") == b"a\nb"


def test_parse_head() -> None:
    status, headers = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked")
    assert status == 200
    assert headers == {b"transfer-encoding": b"chunked"}


def test_find_stamp_in_each_server_shape() -> None:
    assert find_stamp(b'{"data":{"seq":1,"pad":"x","t":1700000000123456789}}') == (
        1700000000123456789
    )
    assert find_stamp(b'42["event",{"data": {"seq": 1, "t": 17}}]') == 17
    assert find_stamp(b'{"type":"subscribed"}') is None


@pytest.mark.timeout(90)
def test_bench_end_to_end_json() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings",
            "bench",
            "--server",
            "tidings,handrolled",
            "--transport",
            "ws,sse",
            "--subscribers",
            "5",
            "--events",
            "20",
            "--rate",
            "100",
            "--drain-timeout",
            "5",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=85,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    report = orjson.loads(completed.stdout)
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["cpu_model"]
    results = report["results"]
    assert {(r["server"], r["transport"]) for r in results} == {
        ("tidings", "ws"),
        ("tidings", "sse"),
        ("handrolled", "ws"),
        ("handrolled", "sse"),
    }
    for r in results:
        where = f"{r['server']}/{r['transport']}"
        assert r["subscribers"] == r["connected"] == 5, where
        assert r["connect_failures"] == 0, where
        assert r["expected"] == 100, where
        assert r["delivered"] == r["expected"], where
        assert r["loss"] == 0 and r["loss_ratio"] == 0, where
        assert r["deliveries_per_s"] > 0, where
        latency = r["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] < 5000
        assert r["server_cpu_s"] > 0, where
        assert r["cpu_us_per_delivery"] > 0, where
        assert r["rss_before_bytes"] > 0 and r["rss_after_bytes"] > 0, where
        assert isinstance(r["rss_per_connection_bytes"], float), where
        assert 0 < r["publish_ms"]["p50"] <= r["publish_ms"]["p99"] < 5000, where
        assert r["publish_failures"] == 0, where
        assert r["publish_rate_achieved"] > 0, where
        assert r["loadgen_cpu_s"] > 0 and r["loadgen_cpu_percent"] > 0, where
        assert r["publisher_cpu_s"] > 0, where
        assert r["errors"] == [], where
    ratios = report["ratios"]
    assert {(r["server"], r["baseline"], r["transport"]) for r in ratios} == {
        ("handrolled", "tidings", "ws"),
        ("handrolled", "tidings", "sse"),
    }
    assert all(r["cpu_us_per_delivery"] > 0 for r in ratios)


def test_publish_body_from_an_application_template() -> None:
    data = {"seq": 1, "t": 17}
    hub_body = body_maker("bench", None)(data)
    assert orjson.loads(hub_body) == {"channel": "bench", "type": "bench", "data": data}
    template = '{"camera_id": "c", "details": "$data", "n": 1}'
    assert orjson.loads(body_maker("bench", template)(data)) == {
        "camera_id": "c",
        "details": data,
        "n": 1,
    }
    with pytest.raises(ValueError, match="no"):
        body_maker("bench", '{"data": 1}')
