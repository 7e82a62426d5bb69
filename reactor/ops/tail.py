"""Following a log file like `tail -F`: across rename-and-recreate and copytruncate."""

from __future__ import annotations

import os
import time
from typing import BinaryIO

ROTATED_GRACE_S = 5.0  # keep reading the renamed file this long: the server reopens on USR1
_READ_BLOCK = 65536


class ReadError(Exception):
    """A log file that cannot be opened or read: reported in one line, exit status 1."""

    def __init__(self, path: str, reason: object) -> None:
        reason = getattr(reason, "strerror", None) or reason
        super().__init__(f"cannot read {path}: {reason}")


class Tail:
    """Complete lines appended to `path`, across rotation (rename + recreate) and truncation.

    Call read_lines() periodically. Lines are bytes without the newline; a last line without
    its newline is held back until the writer finishes it.
    """

    def __init__(self, path: str, last_lines: int = 0) -> None:
        self.path = path
        self._file = self._open()
        self._partial = b""
        self._old: list[tuple[BinaryIO, bytes, float]] = []  # rotated files still drained
        _seek_to_last_lines(self._file, last_lines)

    def read_lines(self) -> list[bytes]:
        lines = self._drain_old()
        lines += self._drain()
        replacement = self._replacement()
        if replacement is not None:
            self._old.append((self._file, self._partial, time.monotonic() + ROTATED_GRACE_S))
            self._file, self._partial = replacement, b""
        lines += self._drain()  # the new file, or the truncated one from its start
        return lines

    def close(self) -> None:
        for file, _partial, _deadline in self._old:
            file.close()
        self._old.clear()
        self._file.close()

    def _open(self) -> BinaryIO:
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise ReadError(self.path, exc) from None

    def _drain(self) -> list[bytes]:
        lines, self._partial = _split_lines(self._partial + _read_all(self._file))
        return lines

    def _drain_old(self) -> list[bytes]:
        lines: list[bytes] = []
        kept = []
        now = time.monotonic()
        for file, partial, deadline in self._old:
            new, partial = _split_lines(partial + _read_all(file))
            lines += new
            if new:
                deadline = now + ROTATED_GRACE_S
            if now < deadline:
                kept.append((file, partial, deadline))
            else:
                if partial:
                    lines.append(partial)  # the writer has moved on: it never ends
                file.close()
        self._old = kept
        return lines

    def _replacement(self) -> BinaryIO | None:
        """A new file now at `path`, or None (same file, or nothing there yet)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # renamed away and not recreated yet: keep reading the old file
        current = os.fstat(self._file.fileno())
        if (st.st_dev, st.st_ino) == (current.st_dev, current.st_ino):
            if st.st_size < self._file.tell():  # truncated in place (copytruncate)
                self._file.seek(0)
                self._partial = b""
            return None
        try:
            return open(self.path, "rb")
        except OSError:
            return None  # replaced again or not readable yet; retry on the next poll


def _read_all(file: BinaryIO) -> bytes:
    chunks = []
    while chunk := file.read(_READ_BLOCK):
        chunks.append(chunk)
    return b"".join(chunks)


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    *lines, partial = data.split(b"\n")
    return lines, partial


def _seek_to_last_lines(file: BinaryIO, count: int) -> None:
    """Position `file` at the start of its last `count` lines (at the end when count is 0)."""
    end = file.seek(0, os.SEEK_END)
    if count <= 0:
        return
    newlines = 0
    pos = end
    while pos > 0:
        step = min(_READ_BLOCK, pos)
        pos -= step
        file.seek(pos)
        block = file.read(step)
        stop = len(block) - 1 if pos + step == end and block.endswith(b"\n") else len(block)
        while (stop := block.rfind(b"\n", 0, stop)) >= 0:
            newlines += 1
            if newlines == count:
                file.seek(pos + stop + 1)
                return
    file.seek(0)


# -- output -------------------------------------------------------------------------------
