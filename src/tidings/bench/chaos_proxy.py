"""A TCP relay in front of one hub node that the chaos run can cut.

Subscribers connect to the proxy, not to the node, so the run can drop every connection
at once (a reconnect storm, as when a load balancer or a NAT forgets its flows) without
touching the node. While the node is down the proxy accepts and closes at once, which a
client sees as a refused connection.

The run starts one proxy process per node (``python -m tidings.bench.chaos_proxy PORT``:
it prints ``{"port": …}``, cuts on each ``{"cmd": "cut"}`` line on stdin, answering
``{"cut": n}``, and ends at end of input),
so that relaying thousands of connections takes neither the run's file descriptors (two
per connection) nor its CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import orjson

__all__ = ["Proxy"]

_CHUNK = 1 << 16


class Proxy:
    """Relays ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream>``; :meth:`cut` drops all."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on a free port; return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=4096)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def connections(self) -> int:
        """Connections being relayed now."""
        return len(self._pairs)

    def cut(self) -> int:
        """Abort every relayed connection, both sides (no close handshake); how many."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()
        return len(pairs)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()  # the node is down: the client sees a refusal
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        pumps = [
            asyncio.ensure_future(_pump(reader, up_writer)),
            asyncio.ensure_future(_pump(up_reader, writer)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            # When one direction ends, the other is cut too: a half-closed relay would
            # leave the client waiting on a node that has gone.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return
            writer.write(data)
            await writer.drain()


async def serve(upstream: int) -> None:
    """Run a proxy to ``upstream`` driven by stdin (see the module's docstring)."""
    from tidings.bench import procstat
    from tidings.bench.chaos_child import say, stdin_lines

    procstat.raise_open_files(65_536)
    proxy = Proxy(upstream)
    port = await proxy.start()
    stdin = await stdin_lines()
    say({"port": port})
    try:
        while line := await stdin.readline():
            if orjson.loads(line).get("cmd") == "cut":
                say({"cut": proxy.cut()})
    finally:
        await proxy.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
