"""``tidings listen``: a pretty live tail over SSE that resumes by itself."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode

import httpx
import orjson
from rich.console import Console
from rich.markup import escape

from tidings.core.sse import SSEDecoder
from tidings.errors import Unavailable

__all__ = ["tail"]

console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _line(message_data: str) -> str:
    event = orjson.loads(message_data)
    stamp = str(event.get("timestamp", ""))
    try:
        shown = datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        shown = stamp
    data = orjson.dumps(event.get("data")).decode()
    return (
        f"[dim]{shown}[/dim] [cyan]{escape(str(event.get('channel')))}[/cyan] "
        f"[bold]{escape(str(event.get('type')))}[/bold] {escape(data)}"
    )


class _Refused(Unavailable):
    """The hub answered, with a status worth retrying (429, 5xx)."""


def error_text(response: httpx.Response) -> str:
    """A hub's JSON error as ``code: message`` (the body's start when it is not one)."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


async def tail(
    url: str,
    channels: Sequence[str],
    *,
    since: str | None = None,
    types: Sequence[str] = (),
    token: str | None = None,
    json_lines: bool = False,
    count: int | None = None,
    max_delay: float = 30.0,
) -> int:
    """Print events of ``channels`` until interrupted or ``count`` events were shown.

    Returns the exit status: 0, or 1 when the hub refused the stream (a 4xx answer).
    """
    query = urlencode([("channel", c) for c in channels] + [("type", t) for t in types])
    stream_url = url.rstrip("/") + "/api/v1/events?" + query
    cursor = since
    shown = 0
    failures = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
        while True:
            headers = {"Accept": "text/event-stream"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if cursor:
                headers["Last-Event-ID"] = cursor
            try:
                async with client.stream("GET", stream_url, headers=headers) as response:
                    if response.status_code != 200:
                        await response.aread()
                        err.print(
                            f"[red]tidings: {response.status_code}[/red] "
                            f"{escape(error_text(response))}"
                        )
                        if 400 <= response.status_code < 500 and response.status_code != 429:
                            return 1
                        raise _Refused(f"the hub answered {response.status_code}")
                    failures = 0
                    decoder = SSEDecoder()
                    async for chunk in response.aiter_bytes():
                        for message in decoder.feed(chunk):
                            if message.event == "position":
                                pass  # where the stream is: the cursor below keeps it
                            elif message.event in ("reset", "disconnect") and json_lines:
                                # Every stdout line in --json mode is one JSON object.
                                body = orjson.loads(message.data)
                                line = orjson.dumps({"type": message.event, **body})
                                print(line.decode(), flush=True)
                            elif message.event in ("reset", "disconnect"):
                                what = f"[yellow]{message.event}[/yellow]"
                                console.print(f"{what} {escape(message.data)}")
                            elif json_lines:
                                print(message.data, flush=True)
                                shown += 1
                            else:
                                console.print(_line(message.data))
                                shown += 1
                            if count is not None and shown >= count:
                                return 0
                        cursor = decoder.last_event_id or cursor
                why = "the stream ended"
            except _Refused as exc:
                why = str(exc)
            except httpx.HTTPError as exc:
                why = f"cannot reach {url}: {type(exc).__name__}" + (
                    f" ({exc})" if str(exc) else ""
                )
            failures += 1
            delay = min(max_delay, 2 ** min(failures - 1, 5)) * random.uniform(0.5, 1.0)
            # On stderr: with --json, stdout holds JSON objects only.
            err.print(f"[yellow]tidings: {escape(why)}; reconnecting in {delay:.1f}s[/yellow]")
            await asyncio.sleep(delay)
