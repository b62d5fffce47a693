"""Follow a growing log file like ``tail -F``, by polling (no inotify).

:meth:`LogFollower.poll` returns the complete lines written since the last call:

* **rotation** — the path now names another file (another inode): the rest of the old
  file is read first, then the new one from its start. While the path is missing the
  follower waits for it to come back.
* **truncation** — the file became shorter than what was read: it is read again from
  its start. (A file truncated and rewritten past the old size between two polls cannot
  be told from one that grew; ``tail -F`` has the same blind spot.)
* **partial lines** — text after the last newline is held until its newline comes. A
  line longer than ``max_line`` bytes is dropped (counted in :attr:`dropped`).

It reads at most ``max_read`` bytes per poll, so one poll is bounded; call it again soon
when it returned a full read. Blocking file I/O: run it in a thread from async code.
"""

from __future__ import annotations

import os
from typing import BinaryIO

__all__ = ["LogFollower"]


class LogFollower:
    def __init__(
        self,
        path: str,
        *,
        from_start: bool = False,
        max_line: int = 64 * 1024,
        max_read: int = 1024 * 1024,
    ) -> None:
        self.path = path
        self.max_line = max_line
        self.max_read = max_read
        self._from_start = from_start
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._position = 0
        self._partial = b""
        self._skipping = False  # inside an over-long line, until its newline
        #: True when the last poll read ``max_read`` bytes: more is probably waiting.
        self.behind = False
        #: Lines longer than ``max_line``, dropped.
        self.dropped = 0
        #: How often the file was replaced and truncated.
        self.rotations = 0
        self.truncations = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self) -> list[str]:
        """Complete lines written since the last poll, without their newlines."""
        lines: list[str] = []
        if self._file is None and not self._open():
            return lines
        assert self._file is not None
        try:
            st = os.stat(self.path)
        except OSError:
            st = None  # moved away, not yet replaced: finish the old file, wait
        if st is not None and st.st_ino != self._inode:
            lines += self._read()  # what was written to the old file before it moved
            self.close()
            self._partial, self._skipping = b"", False
            self.rotations += 1
            self._from_start = True  # a new file is read from its beginning
            if not self._open():
                return lines
            return lines + self._read()
        size = os.fstat(self._file.fileno()).st_size
        if size < self._position:
            self.truncations += 1
            self._file.seek(0)
            self._position = 0
            self._partial, self._skipping = b"", False
        return lines + self._read()

    def _open(self) -> bool:
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - held open between polls
        except OSError:
            return False
        st = os.fstat(file.fileno())
        self._file, self._inode = file, st.st_ino
        if self._from_start:
            self._position = 0
        else:
            self._position = file.seek(0, os.SEEK_END)
            self._from_start = True  # only the first file starts at its end
        return True

    def _read(self) -> list[str]:
        assert self._file is not None
        data = self._file.read(self.max_read)
        self.behind = len(data) == self.max_read
        if not data:
            return []
        self._position += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        lines: list[str] = []
        for chunk in chunks:
            if self._skipping:
                self._skipping = False
                continue
            if len(chunk) > self.max_line:
                self.dropped += 1
                continue
            lines.append(chunk.decode("utf-8", "replace").rstrip("\r"))
        if len(self._partial) > self.max_line:
            if not self._skipping:
                self.dropped += 1
            self._partial, self._skipping = b"", True
        return lines
