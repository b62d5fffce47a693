"""Sans-I/O reading of an HTTP/1.1 SSE response for the load generator: bytes in, frames out.

Thousands of subscribers share one core, so this does the least work that is still
correct: it undoes chunked transfer coding and splits the stream at blank lines, and
leaves the parsing of a frame's fields to the caller. It never touches a socket.
"""

from __future__ import annotations

__all__ = ["ChunkedDecoder", "FrameSplitter", "data_lines", "parse_head"]


def parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    """The status code and lower-cased headers of a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


class ChunkedDecoder:
    """Undo ``Transfer-Encoding: chunked``; :meth:`feed` returns the body bytes so far."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # body bytes left in the current chunk
        self._skip = 0  # bytes of the CRLF after a chunk still to drop
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data
        out: list[bytes] = []
        position = 0
        while position < len(buffer) and not self.finished:
            if self._skip:
                taken = min(self._skip, len(buffer) - position)
                self._skip -= taken
                position += taken
            elif self._remaining:
                end = min(position + self._remaining, len(buffer))
                out.append(buffer[position:end])
                self._remaining -= end - position
                position = end
                if not self._remaining:
                    self._skip = 2
            else:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                size = int(buffer[position:line_end].split(b";", 1)[0], 16)
                position = line_end + 2
                if size == 0:
                    self.finished = True
                else:
                    self._remaining = size
        self._buffer = buffer[position:]
        return b"".join(out)


class FrameSplitter:
    """Split an SSE body into frames (the text between blank lines), LF or CRLF endings."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        frames = buffer.split(b"\n\n")
        self._buffer = frames.pop()
        return frames


def data_lines(frame: bytes) -> bytes:
    """The joined ``data:`` field of one frame (empty when it has none)."""
    parts = [
        line[5:].removeprefix(b" ") for line in frame.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(parts)
