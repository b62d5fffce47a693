"""``tidings serve``: one hub process, or with ``--workers N`` N hub processes on one port.

Each worker (spawned, so no state leaks between them) listens on the port with its own
``SO_REUSEPORT`` socket, so the kernel spreads new connections across the workers; a
single shared socket would let whichever process wakes first take most of them. The
parent holds the port reserved for the workers' lifetime. Each worker runs a full hub
with the same settings, which must name a shared broker. On SIGTERM or SIGINT the
parent asks every worker to shut down gracefully (each sends ``server_shutdown`` to its
clients) and waits for them; a worker that dies unexpectedly is replaced.

A scrape of the shared port reaches whichever worker the kernel picks, so with
``worker_ports`` each worker also listens on a port of its own (``worker_ports + i``),
where Prometheus scrapes it; each worker's metrics carry its own ``node`` label.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from multiprocessing.context import SpawnProcess
from types import FrameType

from tidings.backends import redact_url
from tidings.settings import Settings

__all__ = ["serve_workers"]

log = logging.getLogger("tidings.workers")


def _socket(settings: Settings, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, port))
    return sock


def _worker(settings: Settings, port: int, index: int) -> None:  # pragma: no cover - a subprocess
    from tidings.hub import Hub
    from tidings.logs import configure_logging
    from tidings.server import HubServer, build_config

    configure_logging(settings.log_format, settings.log_level)
    sock = _socket(settings, port)
    sock.listen(2048)
    sockets = [sock]
    if settings.worker_ports is not None:
        own = _bound(settings.model_copy(update={"port": settings.worker_ports + index}))
        own.listen(128)
        sockets.append(own)
    hub = Hub(settings)
    server = HubServer(build_config(hub, settings), hub)
    server.run(sockets=sockets)


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` hub processes until told to stop; return an exit code."""
    context = multiprocessing.get_context("spawn")
    # Bound but not listening: reserves the port (and picks one for port 0) without
    # taking any connection.
    reserved = _socket(settings, settings.port)
    port = reserved.getsockname()[1]
    stopping = threading.Event()

    def start(index: int) -> SpawnProcess:
        # Each worker is a node of its own (in listings and metrics): a name of its own.
        own = settings.model_copy(
            update={"node_id": f"{settings.node_id}-w{index}" if settings.node_id else None}
        )
        process = context.Process(target=_worker, args=(own, port, index), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes = [start(index) for index in range(settings.workers)]
    log.info(
        "tidings serving on http://%s:%s/ with %d workers (broker %s)",
        settings.host,
        port,
        settings.workers,
        redact_url(settings.broker),
    )
    try:
        while not stopping.wait(0.5):
            for index, process in enumerate(processes):
                if not process.is_alive():
                    log.warning(
                        "worker %s exited with %s; starting another", process.pid, process.exitcode
                    )
                    processes[index] = start(index)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: each worker shuts down gracefully
        for process in processes:
            process.join(timeout=8)
            if process.is_alive():
                process.kill()
                process.join()
        reserved.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run(settings: Settings) -> None:
    """Serve ``settings`` until interrupted (``tidings serve``): in this process, or in
    ``settings.workers`` worker processes."""
    from tidings.hub import Hub
    from tidings.logs import configure_logging
    from tidings.server import HubServer, build_config

    configure_logging(settings.log_format, settings.log_level)
    if settings.workers > 1:
        serve_workers(settings)
        return
    # Bound before anything starts: a port in use is one clear error, not a startup log
    # followed by uvicorn's traceback.
    sock = _bound(settings)
    hub = Hub(settings)
    server = HubServer(build_config(hub, settings), hub)
    log.info(
        "tidings serving on http://%s:%s/ (store %s, broker %s)",
        settings.host,
        sock.getsockname()[1],
        redact_url(settings.store),
        redact_url(settings.broker),
    )
    server.run(sockets=[sock])


def _bound(settings: Settings) -> socket.socket:
    """A socket bound to the serving address; :class:`OSError` saying why not."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise OSError(f"cannot listen on {settings.host}:{settings.port}: {reason}") from None
    return sock
