"""The child processes of the chaos run (its subscriber workers and proxies), spoken to
in JSON lines over their stdin and stdout: :class:`Child` is the run's side of one,
:func:`stdin_lines` and :func:`say` the child's side."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import orjson

__all__ = ["Child", "say", "stdin_lines"]

#: Longest line either side reads: a worker's result carries every reconnect time.
LINE_LIMIT = 1 << 26


class Child:
    """A ``python -m MODULE`` subprocess of the run."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None

    async def spawn(self, module: str, *args: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(message) + b"\n")
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{type(self).__name__} exited with {await self.process.wait()}")
        message: dict[str, Any] = orjson.loads(line)
        return message

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.receive()

    async def stop(self) -> None:
        """End of input asks it to finish; after 10 s it is killed."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def stdin_lines() -> asyncio.StreamReader:
    """This process's stdin as a stream of lines (in a child)."""
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def say(message: dict[str, Any]) -> None:
    """Write one JSON line to stdout (in a child)."""
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.flush()
