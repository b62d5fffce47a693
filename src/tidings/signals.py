"""Closing streams when the process is asked to stop, whichever server runs the hub.

A server drains its connections before it runs the ASGI lifespan shutdown, and a stream
never ends by itself: under plain uvicorn, an embedded hub's streams held the shutdown
until a second Ctrl+C cancelled them, with a traceback each and no ``disconnect`` for the
clients. So a started hub chains itself in front of the process's SIGINT and SIGTERM
handlers (the server's, which stay in charge): on a signal every stream gets
``disconnect`` with ``server_shutdown`` and ends, and the server's drain finds nothing to
wait for. ``tidings serve`` does the same in its server; doing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["on_stop_signals"]

log = logging.getLogger("tidings.hub")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_stop_signals(action: Callable[[], Any]) -> Callable[[], None]:
    """Call ``action`` on the running loop when SIGINT or SIGTERM arrives, then the
    handler that was there before. Returns a function that undoes it.

    Only from the main thread (Python delivers signals there), and only in front of a
    Python-level handler: a loop's own ``add_signal_handler`` is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    loop = asyncio.get_running_loop()
    installed: dict[int, Callable[[int, FrameType | None], Any]] = {}
    previous_of: dict[int, Callable[[int, FrameType | None], Any]] = {}
    for signum in SIGNALS:
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(
            signum: int,
            frame: FrameType | None,
            previous: Callable[[int, FrameType | None], Any] = previous,
        ) -> Any:
            # A closed loop has nothing of ours left to close.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(action)
            return previous(signum, frame)

        signal.signal(signum, handler)
        installed[signum] = handler
        previous_of[signum] = previous

    def undo() -> None:
        for signum, handler in installed.items():
            # Someone replaced it since: theirs stays (and calls ours or not, as they chose).
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous_of[signum])
        installed.clear()

    return undo


def _nothing() -> None:
    pass
