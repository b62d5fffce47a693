"""``tidings bench --mode chaos``: a cluster under injected faults, every event checked.

Starts a Redis of its own, ``--nodes`` hub nodes on it (Redis broker and store, JWT auth),
a cuttable TCP proxy in front of each node, and ``--subscribers`` real clients spread over
WebSocket and SSE in a few worker processes, following some of ``--channels`` channels
(see ``CHANNELS_EACH``). Then, for ``--duration`` seconds, a publisher stamps every channel's events
with sequence numbers while the :mod:`~tidings.bench.chaos_plan` injects faults: a node
SIGKILLed and restarted, Redis restarted, every connection cut at the proxies, slow
subscribers, expired tokens. Afterwards it waits (up to ``--drain-timeout``) until every
subscriber has every acknowledged event, and asks each worker's checker for its verdict:
lost, duplicated, out of order (each must be 0), gaps announced with ``reset``, reconnect
time, the most memory a node held, and failures by kind.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tidings.bench import procstat
from tidings.bench.chaos_check import Verdict
from tidings.bench.chaos_child import Child
from tidings.bench.chaos_cluster import Node
from tidings.bench.chaos_plan import KINDS, Fault, plan
from tidings.bench.chaos_publisher import SequencedPublisher
from tidings.bench.common import ModeOptions, ModeReport, Progress
from tidings.bench.redis_server import RedisServer
from tidings.bench.run import quantile

__all__ = ["run_chaos"]

#: Subscribers per worker process (the last worker takes the remainder).
PER_WORKER = 1250
#: Channels each subscriber follows: a WebSocket carries them all on one connection; the
#: Python client opens one SSE stream per channel, so SSE subscribers follow one (that
#: keeps 10,000 subscribers at 10,000 connections, what the machine can take).
CHANNELS_EACH = {"websocket": 3, "sse": 1}
#: Subscriptions being set up at once, over all workers: more only makes handshakes
#: queue past the clients' open timeout, and they start over.
CONNECTING_AT_ONCE = 200
#: Seconds a killed node stays down; seconds tokens stay expired; seconds a pause lasts.
NODE_DOWN_S = 2.0
EXPIRED_S = 6.0
PAUSE_S = 15.0
#: Share of subscribers a pause takes.
PAUSED_SHARE = 0.02
#: Lifetime of the tokens the subscribers mint: WebSocket clients refresh in-band, SSE
#: streams are closed at expiry and resume, all through the run.
TOKEN_TTL_S = 45


class WorkerProcess(Child):
    """One :mod:`tidings.bench.chaos_worker` subprocess: a share of the subscribers."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = 0
        self.failed = 0

    @classmethod
    async def start(cls, config: dict[str, Any]) -> WorkerProcess:
        worker = cls()
        await worker.spawn("tidings.bench.chaos_worker")
        await worker.send(config)
        return worker

    async def subscribed(self) -> None:
        """Follow the worker's progress until every subscription is up (or failed)."""
        while True:
            message = await self.receive()
            self.ready, self.failed = message["ready"], message["failed"]
            if message.get("done"):
                return


class ProxyProcess(Child):
    """A :mod:`tidings.bench.chaos_proxy` subprocess in front of one node."""

    def __init__(self, upstream: int) -> None:
        super().__init__()
        self.upstream = upstream
        self.port = 0

    async def start(self) -> None:
        await self.spawn("tidings.bench.chaos_proxy", str(self.upstream))
        self.port = int((await self.receive())["port"])

    async def cut(self) -> int:
        """Drop every connection through this proxy; how many there were."""
        return int((await self.ask({"cmd": "cut"}))["cut"])


class Cluster:
    """Redis, the nodes and their proxies; carries out faults."""

    def __init__(self, directory: Path, nodes: int, subscribers: int) -> None:
        self.directory = directory
        self.redis = RedisServer(data_dir=directory)
        self.secret = secrets.token_urlsafe(32)
        self.api_key = secrets.token_urlsafe(32)
        url = self.redis.url
        args = [
            "--broker", url, "--store", url,
            "--jwt-secret", self.secret, "--api-key", f"chaos={self.api_key}",
            "--log-level", "warning",
            "--max-connections", str(max(10_000, subscribers * 8)),
            "--connection-rate", "1000000000",
            # Large enough that a resume never outruns history in a run: a reset would
            # then only come from a fault the hub cannot hide.
            "--history-size", "100000",
        ]  # fmt: skip
        env = {"TIDINGS_PUBLISH_RATE": "1000000000"}
        self.nodes = [Node(f"node-{i + 1}", args, env) for i in range(nodes)]
        self.proxies = [ProxyProcess(node.port) for node in self.nodes]
        self.injected: Counter[str] = Counter()
        self.max_rss = [0] * nodes
        self._restarts: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await asyncio.to_thread(self.redis.start)
        for node in self.nodes:
            node.start(self._log(node))
        await asyncio.gather(*(node.healthy() for node in self.nodes))
        for proxy in self.proxies:
            await proxy.start()

    def _log(self, node: Node) -> Path:
        return self.directory / f"{node.name}.log"

    def tracebacks(self) -> list[str]:
        """The first line of each exception the nodes logged: a fault the hub did not
        handle (what it expects, it logs as one-line warnings)."""
        found = []
        for node in self.nodes:
            lines = self._log(node).read_text(errors="replace").splitlines()
            for index, line in enumerate(lines):
                if line.startswith("Traceback"):
                    found.append(f"{node.name}: {lines[index - 1][:200] if index else line}")
        return found

    def sample_memory(self) -> None:
        for index, node in enumerate(self.nodes):
            self.max_rss[index] = max(self.max_rss[index], node.rss())

    async def inject(self, fault: Fault, workers: list[WorkerProcess], subscribers: int) -> None:
        self.injected[fault.kind] += 1
        if fault.kind == "kill_node":
            node = self.nodes[fault.node]
            node.kill()
            task = asyncio.ensure_future(self._restart(node))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)
        elif fault.kind == "restart_redis":
            await asyncio.to_thread(self.redis.restart)
        elif fault.kind == "cut_connections":
            for proxy in self.proxies:
                await proxy.cut()
        elif fault.kind == "pause_subscribers":
            count = max(1, round(subscribers * PAUSED_SHARE / len(workers)))
            for worker in workers:
                await worker.send({"cmd": "pause", "count": count, "seconds": PAUSE_S})
        elif fault.kind == "expire_tokens":
            # Tokens minted from now on are expired; the clients of one node are cut so
            # that they come back with them, are refused, and must try again.
            for worker in workers:
                await worker.send({"cmd": "expire", "seconds": EXPIRED_S})
            await self.proxies[fault.node].cut()

    async def _restart(self, node: Node) -> None:
        await asyncio.sleep(NODE_DOWN_S)
        node.start(self._log(node))
        await node.healthy()

    async def whole(self) -> None:
        """Wait until every killed node is back."""
        await asyncio.gather(*self._restarts)

    async def close(self) -> None:
        for task in self._restarts:
            task.cancel()
        for proxy in self.proxies:
            await proxy.stop()
        for node in self.nodes:
            await asyncio.to_thread(node.stop)
        await asyncio.to_thread(self.redis.stop)


def _layout(subscribers: int, channels: list[str], nodes: int, seed: int) -> list[dict[str, Any]]:
    """Who follows what, over which transport, through which node: the same every run."""
    chooser = random.Random(seed)
    layout = []
    for i in range(subscribers):
        transport = "websocket" if i % 2 == 0 else "sse"
        count = min(CHANNELS_EACH[transport], len(channels))
        layout.append(
            {
                "name": f"sub-{i}",
                "transport": transport,
                "channels": chooser.sample(channels, count),
                "node": i % nodes,
            }
        )
    return layout


async def run_chaos(options: ModeOptions, progress: Progress) -> ModeReport:
    procstat.raise_open_files(options.subscribers * 4 + 4096)
    channels = [f"chaos:{i}" for i in range(options.channels)]
    layout = _layout(options.subscribers, channels, options.nodes, seed=1)
    # One fault every 8 s in a short run; a long run spaces them so that the cluster also
    # spends time whole (about twenty faults in all, each kind several times).
    faults = plan(options.duration, options.nodes, interval=max(8.0, options.duration / 20))
    scratch = Path(tempfile.mkdtemp(prefix="tidings-chaos-"))
    cluster = Cluster(scratch, options.nodes, options.subscribers)
    workers: list[WorkerProcess] = []
    try:
        await cluster.start()
        urls = [f"http://127.0.0.1:{proxy.port}" for proxy in cluster.proxies]
        for start in range(0, len(layout), PER_WORKER):
            part = layout[start : start + PER_WORKER]
            config = {
                "concurrency": max(10, CONNECTING_AT_ONCE * PER_WORKER // len(layout)),
                "urls": urls,
                "secret": cluster.secret,
                "token_ttl": TOKEN_TTL_S,
                "subscribers": part,
            }
            workers.append(await WorkerProcess.start(config))
        subscribing = asyncio.gather(*(w.subscribed() for w in workers))
        subscribe_started = time.monotonic()
        deadline = subscribe_started + options.connect_timeout
        while not subscribing.done():
            done = sum(w.ready + w.failed for w in workers)
            progress("subscribing", done, options.subscribers)
            if time.monotonic() > deadline:
                subscribing.cancel()
                raise RuntimeError(
                    f"{done} of {options.subscribers} subscribers were in place after "
                    f"--connect-timeout {options.connect_timeout:g} s"
                )
            await asyncio.sleep(0.2)
        await subscribing
        subscribe_s = time.monotonic() - subscribe_started
        failed = sum(w.failed for w in workers)

        publisher = SequencedPublisher(
            [node.url for node in cluster.nodes],
            channels,
            api_key=cluster.api_key,
            rate=options.rate,
        )
        stop = asyncio.Event()
        publishing = asyncio.ensure_future(publisher.run(stop))
        started = time.monotonic()
        pending = list(faults)
        while (elapsed := time.monotonic() - started) < options.duration:
            progress("publishing under faults", elapsed, options.duration, "s")
            cluster.sample_memory()
            while pending and pending[0].at <= elapsed:
                await cluster.inject(pending.pop(0), workers, options.subscribers)
            if publishing.done():
                await publishing  # raises what stopped it
            await asyncio.sleep(0.2)
        stop.set()
        await publishing
        await cluster.whole()
        acked = publisher.acknowledged

        drain_started = time.monotonic()
        while time.monotonic() - drain_started < options.drain_timeout:
            cluster.sample_memory()
            replies = [await w.ask({"cmd": "check", "acked": acked}) for w in workers]
            missing = sum(reply["missing"] for reply in replies)
            progress("waiting for the last deliveries", missing, missing)
            if missing == 0:
                break
            await asyncio.sleep(1.0)
        drain_s = time.monotonic() - drain_started
        results = [(await w.ask({"cmd": "finish", "acked": acked}))["result"] for w in workers]
    finally:
        for worker in workers:
            await worker.stop()
        await cluster.close()
    report = _report(options, cluster, publisher, results, failed, faults, (subscribe_s, drain_s))
    if report.ok:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        report.notes.append(f"the nodes' logs are kept in {scratch}")
    return report


def _report(
    options: ModeOptions,
    cluster: Cluster,
    publisher: SequencedPublisher,
    results: list[dict[str, Any]],
    failed: int,
    faults: list[Fault],
    phases: tuple[float, float],
) -> ModeReport:
    subscribe_s, drain_s = phases
    by_transport = {"websocket": Verdict(), "sse": Verdict()}
    reasons: Counter[str] = Counter()
    resets: Counter[str] = Counter()
    reconnects: list[float] = []
    worker_rss = 0
    for result in results:
        for name, figures in result["verdicts"].items():
            by_transport[name].add(Verdict(**figures))
        reasons.update(result["reasons"])
        resets.update(result["resets"])
        reconnects.extend(result["reconnects"])
        worker_rss = max(worker_rss, result["max_rss_kib"] * 1024)
    verdict = Verdict()
    for part in by_transport.values():
        verdict.add(part)
    abandoned = sum(len(seqs) for seqs in publisher.abandoned.values())
    mib = 1 << 20

    def split(name: str, spec: str = "") -> str:
        ws, sse = (format(getattr(by_transport[t], name), spec) for t in ("websocket", "sse"))
        return f"{format(getattr(verdict, name), spec)} (WebSocket {ws}, SSE {sse})"

    rows = [
        [
            "subscribers (half WebSocket, half SSE)",
            f"{options.subscribers:,} in place in {subscribe_s:.0f} s ({failed} failed)",
        ],
        [
            "nodes, channels",
            f"{options.nodes}, {options.channels} (WebSocket subscribers follow "
            f"{CHANNELS_EACH['websocket']}, SSE {CHANNELS_EACH['sse']})",
        ],
        ["faults injected", ", ".join(f"{k}: {cluster.injected[k]}" for k in KINDS)],
        ["events acknowledged", f"{publisher.published:,} ({abandoned} given up)"],
        ["deliveries", split("delivered", ",")],
        ["lost", split("lost")],
        ["duplicated", split("duplicates")],
        ["out of order", split("out_of_order")],
        ["resets", split("resets")],
        ["events in announced gaps (reset)", split("gap")],
        ["delivered, not acknowledged", split("unacknowledged")],
        [
            "reconnect p50 / p99 / max",
            f"{quantile(reconnects, 0.5):.2f} / {quantile(reconnects, 0.99):.2f} / "
            f"{max(reconnects, default=0.0):.2f} s ({len(reconnects):,} reconnects)",
        ],
        [
            "most memory a node held",
            " / ".join(f"{rss / mib:.0f}" for rss in cluster.max_rss) + " MiB",
        ],
        ["most memory a client worker held", f"{worker_rss / mib:.0f} MiB"],
        ["drain after publishing stopped", f"{drain_s:.1f} s"],
    ]
    notes = []
    if publisher.failures:
        failures = ", ".join(f"{k}: {n}" for k, n in publisher.failures.most_common())
        notes.append(f"publish attempts retried: {failures}")
    if reasons:
        notes.append(
            "connections ended by: " + ", ".join(f"{k}: {n}" for k, n in reasons.most_common(12))
        )
    if resets:
        notes.append("resets by reason: " + ", ".join(f"{k}: {n}" for k, n in resets.items()))
    tracebacks = cluster.tracebacks()
    if tracebacks:
        notes.append(f"{len(tracebacks)} exceptions in the nodes' logs, first: {tracebacks[0]}")
    ok = verdict.clean and failed == 0 and publisher.published > 0 and not tracebacks
    data = {
        "subscribers": options.subscribers,
        "nodes": options.nodes,
        "channels": options.channels,
        "duration_s": options.duration,
        "rate": options.rate,
        "faults": [fault.__dict__ for fault in faults],
        "injected": dict(cluster.injected),
        "acknowledged": publisher.published,
        "abandoned": abandoned,
        "verdict": verdict.__dict__,
        "verdict_by_transport": {name: v.__dict__ for name, v in by_transport.items()},
        "failed_to_subscribe": failed,
        "reconnect_s": {
            "count": len(reconnects),
            "p50": quantile(reconnects, 0.5),
            "p99": quantile(reconnects, 0.99),
            "max": max(reconnects, default=0.0),
        },
        "node_max_rss_bytes": cluster.max_rss,
        "worker_max_rss_bytes": worker_rss,
        "publish_failures": dict(publisher.failures),
        "reasons": dict(reasons),
        "resets": dict(resets),
        "node_tracebacks": tracebacks,
        "subscribe_s": subscribe_s,
        "drain_s": drain_s,
    }
    return ModeReport(
        mode="chaos",
        title=f"tidings bench --mode chaos: {options.duration:g} s of faults",
        columns=["", "figure"],
        rows=rows,
        data=data,
        notes=notes,
        ok=ok,
    )
