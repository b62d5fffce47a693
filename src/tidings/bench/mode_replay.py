"""``tidings bench --mode replay``: the server-side time to replay missed events on resume.

Measured two ways, neither of which needs the hub to time itself:

* **in process**, per store (memory, SQLite in a temporary directory): a started
  :class:`~tidings.hub.Hub` holding a channel of ``K + E`` events; each repetition opens
  a connection with :meth:`~tidings.hub.Hub.open_connection` and times
  ``await hub.subscribe(connection, channel, since=<E events back>)``, which returns
  once the session has queued the ``subscribed`` frame and the E missed events (checked
  every time), then closes it;
* **over the network**, against ``tidings serve`` pinned to one core: one WebSocket
  connection; per repetition a ``ping`` (its round trip), then a ``subscribe`` with
  ``since`` E events back, timed from the write to the E-th event received, then an
  ``unsubscribe``. Server time ≈ that time minus the ping's round trip. The server's CPU
  time across all repetitions is reported too, per resume.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tidings.bench import procstat
from tidings.bench.common import ModeOptions, ModeReport, Progress, percentiles_ms, serve
from tidings.bench.run import cores
from tidings.bench.targets import TARGETS
from tidings.bench.wsclient import CLOSE, PING, PONG, TEXT, FrameReader, encode_frame, handshake
from tidings.core.wire import WebSocketWire
from tidings.hub import Hub, Publication
from tidings.identity import ANONYMOUS
from tidings.settings import Settings

__all__ = ["run_replay"]

CHANNEL = "bench-replay"
#: Events published before the ones a resume misses: the history is not just the replay.
OLDER = 1000
#: Seconds one resume may take before the run gives up.
STEP_TIMEOUT = 10.0


def _events(count: int) -> list[dict[str, Any]]:
    return [
        {"channel": CHANNEL, "type": "bench", "data": {"n": n, "pad": "x" * 100}}
        for n in range(count)
    ]


async def _fill(publish: Any, total: int, batch: int) -> list[str]:
    """Publish ``total`` events in batches through ``publish``; their ids, in order."""
    ids: list[str] = []
    for start in range(0, total, batch):
        ids.extend(await publish(min(batch, total - start)))
    return ids


async def _in_process(store: str, options: ModeOptions, progress: Progress) -> dict[str, Any]:
    missed = options.events
    settings = Settings(store=store, history_size=max(100, missed))
    samples: list[int] = []
    pair = cores()
    if pair:  # where a server runs in the other measurements
        procstat.pin(0, pair[0])
    async with Hub(settings) as hub:

        async def publish(count: int) -> list[str]:
            batch = [Publication(**event) for event in _events(count)]
            return [event.id for event in await hub.publish_many(batch)]

        ids = await _fill(publish, OLDER + missed, settings.max_batch_size)
        since = ids[-missed - 1]
        label = f"in process, {store.partition(':')[0]}"
        cpu_before = time.process_time()
        for repetition in range(options.repetitions):
            progress(label, repetition, options.repetitions)
            connection = hub.open_connection(
                transport="websocket",
                wire=WebSocketWire(),
                identity=ANONYMOUS,
                peer=None,
                on_ready=_nothing,  # nothing is sent: only what resume queues is counted
            )
            try:
                started = time.perf_counter_ns()
                await hub.subscribe(connection, CHANNEL, since=since)
                elapsed = time.perf_counter_ns() - started
                delivered = connection.session.delivered
            finally:
                hub.close_connection(connection)
            if delivered != missed:
                raise RuntimeError(f"resume queued {delivered} events, expected {missed}")
            samples.append(elapsed)
        cpu = time.process_time() - cpu_before
    return {
        "where": f"in process, {store.partition(':')[0]} store",
        "ms": percentiles_ms(samples),
        # This process's CPU (all threads: SQLite works in one) over the repetitions.
        "server_cpu_ms_per_resume": cpu * 1e3 / options.repetitions,
        "pinned": pair is not None,
    }


def _nothing() -> None:
    pass


class _Socket:
    """One WebSocket connection over asyncio streams, read message by message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.pending: list[tuple[int, bytes]] = []

    @classmethod
    async def open(cls, port: int, path: str) -> _Socket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request, _ = handshake("127.0.0.1", port, path)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"WebSocket handshake refused: {head[:100]!r}")
        return cls(reader, writer)

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode_frame(orjson.dumps(message)))

    async def receive(self) -> bytes:
        """The next text message; answers pings on the way."""
        while True:
            while self.pending:
                opcode, payload = self.pending.pop(0)
                if opcode == TEXT:
                    if payload.startswith(b'{"type":"ping"'):
                        self.send({"type": "pong"})
                        continue
                    return payload
                if opcode == PING:
                    self.writer.write(encode_frame(payload, PONG))
                elif opcode == CLOSE:
                    raise ConnectionError("the server closed the connection")
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.pending.extend(self.frames.feed(data))

    async def until(self, prefix: bytes) -> bytes:
        while True:
            message = await self.receive()
            if message.startswith(prefix):
                return message
            if message.startswith(b'{"type":"error"'):
                raise RuntimeError(message[:300].decode(errors="replace"))

    def close(self) -> None:
        self.writer.transport.abort()


async def _resume_once(socket: _Socket, since: str, missed: int, rid: int) -> tuple[int, int]:
    """(ping round trip, subscribe → last missed event) in ns, for one repetition."""
    started = time.perf_counter_ns()
    socket.send({"type": "ping", "id": rid})
    await socket.until(b'{"type":"pong"')
    rtt = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    socket.send({"type": "subscribe", "channel": CHANNEL, "since": since, "id": rid})
    received = 0
    recovered = False
    while received < missed:
        message = await socket.receive()
        if message.startswith(b'{"type":"event"'):
            received += 1
        elif message.startswith(b'{"type":"subscribed"'):
            recovered = orjson.loads(message).get("recovered") is True
        elif message.startswith((b'{"type":"reset"', b'{"type":"error"')):
            raise RuntimeError(message[:300].decode(errors="replace"))
    elapsed = time.perf_counter_ns() - started
    if not recovered:
        raise RuntimeError("the resume was not answered with subscribed, recovered: true")
    socket.send({"type": "unsubscribe", "channel": CHANNEL, "id": rid})
    await socket.until(b'{"type":"unsubscribed"')
    return rtt, elapsed


async def _over_network(options: ModeOptions, progress: Progress) -> dict[str, Any]:
    missed = options.events
    history = ("--history-size", str(max(100, missed)))
    async with serve(TARGETS["tidings"], extra_args=history) as served:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{served.port}", timeout=30
        ) as client:

            async def publish(count: int) -> list[str]:
                response = await client.post("/api/v1/publish", json={"events": _events(count)})
                response.raise_for_status()
                return [event["id"] for event in response.json()["events"]]

            ids = await _fill(publish, OLDER + missed, 1000)
        since = ids[-missed - 1]
        socket = await _Socket.open(served.port, "/ws")
        rtts: list[int] = []
        totals: list[int] = []
        servers: list[int] = []
        try:
            await socket.until(b'{"type":"connected"')
            await _resume_once(socket, since, missed, 0)  # warm-up, not counted
            cpu_before, method = procstat.cpu_seconds(served.pid)
            for repetition in range(options.repetitions):
                progress("over the network", repetition, options.repetitions)
                async with asyncio.timeout(STEP_TIMEOUT):
                    rtt, total = await _resume_once(socket, since, missed, repetition + 1)
                rtts.append(rtt)
                totals.append(total)
                servers.append(max(0, total - rtt))
            cpu = procstat.cpu_seconds(served.pid)[0] - cpu_before
        finally:
            socket.close()
    return {
        "where": "over the network (tidings serve, WebSocket)",
        "ms": percentiles_ms(servers),
        "subscribe_to_last_event_ms": percentiles_ms(totals),
        "ping_rtt_ms": percentiles_ms(rtts),
        "server_cpu_ms_per_resume": cpu * 1e3 / options.repetitions,
        "cpu_method": method,
        "pinned": served.pinned,
    }


async def run_replay(options: ModeOptions, progress: Progress) -> ModeReport:
    """Time ``options.repetitions`` resumes of ``options.events`` missed events each."""
    results = []
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as directory:
        for store in ("memory://", f"sqlite:///{Path(directory) / 'replay.db'}"):
            results.append(await _in_process(store, options, progress))
    network = await _over_network(options, progress)
    results.append(network)
    rows = []
    for r in results:
        ms = r["ms"]
        cpu = r["server_cpu_ms_per_resume"]
        rows.append(
            [
                r["where"],
                f"{options.repetitions}",
                f"{ms['p50']:.3f}",
                f"{ms['p90']:.3f}",
                f"{ms['p99']:.3f}",
                f"{ms['max']:.3f}",
                f"{cpu:.3f}",
            ]
        )
    rtt = network["ping_rtt_ms"]
    total = network["subscribe_to_last_event_ms"]
    notes = [
        f"{options.events} missed events per resume, {OLDER} older events in the channel.",
        "in process: the time `await hub.subscribe(..., since=...)` takes, the missed "
        "events queued in the session when it returns.",
        "over the network: subscribe → last missed event received, minus a ping's round "
        f"trip on the same connection (raw p50/p99 {total['p50']:.3f}/{total['p99']:.3f} ms, "
        f"ping p50/p99 {rtt['p50']:.3f}/{rtt['p99']:.3f} ms). Server CPU per resume "
        "includes the ping and the unsubscribe; in process it is this process's CPU time "
        "over the repetitions (opening and closing the connection included).",
    ]
    return ModeReport(
        mode="replay",
        title=f"tidings bench --mode replay (resume with {options.events} missed events)",
        columns=["measured", "resumes", "p50 ms", "p90 ms", "p99 ms", "max ms", "CPU ms/resume"],
        rows=rows,
        data={
            "missed_events": options.events,
            "older_events": OLDER,
            "repetitions": options.repetitions,
            "results": results,
        },
        notes=notes,
    )
