"""Server-Sent Events framing: an encoder for the hub and a decoder for clients.

The encoder writes frames per the WHATWG ``text/event-stream`` format; the decoder is
the same format's parsing algorithm, fed bytes in any chunking, yielding
:class:`SSEMessage` values. Both are pure: bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEMessage", "comment", "frame"]


def _field(name: bytes, value: str) -> bytes:
    if "\r" in value or "\n" in value:
        raise ValueError(f"an SSE {name.decode()} field cannot contain a line break")
    return name + b": " + value.encode() + b"\n"


def frame(
    *,
    data: str | None = None,
    event: str | None = None,
    id: str | None = None,  # noqa: A002 - the field's name in the SSE format
    retry: int | None = None,
) -> bytes:
    """One SSE frame, ending with the blank line that dispatches it.

    ``data`` may span lines: each line becomes its own ``data:`` field, which the
    receiver joins with ``\\n``. A frame with only ``id`` (or ``retry``) sets the
    client's last event id (or reconnection time) without dispatching an event.
    """
    out = bytearray()
    if retry is not None:
        out += b"retry: " + str(int(retry)).encode() + b"\n"
    if id is not None:
        if "\0" in id:
            raise ValueError("an SSE id cannot contain NUL")
        out += _field(b"id", id)
    if event is not None:
        out += _field(b"event", event)
    if data is not None:
        for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            out += b"data: " + line.encode() + b"\n"
    out += b"\n"
    return bytes(out)


def comment(text: str = "") -> bytes:
    """A comment line (``: text``): ignored by clients, keeps proxies and sockets busy."""
    if "\r" in text or "\n" in text:
        raise ValueError("an SSE comment cannot contain a line break")
    return b": " + text.encode() + b"\n\n" if text else b":\n\n"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched SSE event as a client sees it."""

    event: str
    data: str
    id: str
    retry: int | None = None


class SSEDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG HTML §9.2.6).

    Feed it bytes as they arrive; it yields each dispatched message. It also exposes
    ``last_event_id`` and ``retry`` as a browser's ``EventSource`` would keep them, and
    counts ``comments`` so a caller can see heartbeats.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._id_buffer = ""
        # The last chunk ended with CR: an LF at the start of the next one is its pair.
        self._after_cr = False
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> Iterator[SSEMessage]:
        """Consume ``chunk``; yield every message it completes."""
        self._buffer += chunk
        while True:
            line, ending = self._next_line()
            if ending is None:
                return
            message = self._line(line)
            if message is not None:
                yield message

    def _next_line(self) -> tuple[bytes, bytes | None]:
        buffer = self._buffer
        if self._after_cr and buffer:
            self._after_cr = False
            if buffer[0] == 0x0A:
                buffer = self._buffer = buffer[1:]
        lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
        if lf < 0 and cr < 0:
            return b"", None
        cut = lf if cr < 0 else cr if lf < 0 else min(lf, cr)
        if buffer[cut] == 0x0D:
            if cut + 1 >= len(buffer):
                # A CR at the end of the buffer ends the line now (a CR-only stream must not
                # wait for more bytes); it may be the first half of a CRLF split in two.
                self._after_cr = True
                ending = b"\r"
            else:
                ending = b"\r\n" if buffer[cut + 1] == 0x0A else b"\r"
        else:
            ending = b"\n"
        line = buffer[:cut]
        self._buffer = buffer[cut + len(ending) :]
        return line, ending

    def _line(self, raw: bytes) -> SSEMessage | None:
        text = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if not text:
            return self._dispatch()
        if text.startswith(":"):
            self.comments += 1
            return None
        name, sep, value = text.partition(":")
        if sep:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isdigit() and value.isascii():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        self.last_event_id = self._id_buffer
        if not self._data:
            self._event = ""
            return None
        message = SSEMessage(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id,
            retry=self.retry,
        )
        self._data = []
        self._event = ""
        return message
