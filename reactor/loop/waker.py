"""The wake-up socketpair: lets other threads and signal handlers interrupt `select()`."""

from __future__ import annotations

import socket


class Waker:
    """One byte on a socketpair wakes the loop; the read end sits in the selector.

    The write end doubles as the `signal.set_wakeup_fd` target, so a signal arriving while the
    loop sleeps in `select()` wakes it just like a thread-pool result does.
    """

    __slots__ = ("_reader", "_writer")

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        # A tiny buffer is enough: one pending byte already guarantees a wake-up.
        try:
            self._writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        except OSError:
            pass

    @property
    def read_fd(self) -> int:
        return self._reader.fileno()

    @property
    def write_fd(self) -> int:
        return self._writer.fileno()

    def wake(self) -> None:
        """Make the next (or current) `select()` return. Safe from any thread."""
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full, so a wake-up is already pending
        except OSError:
            pass  # closed during shutdown: nobody is waiting any more

    def drain(self) -> None:
        """Consume every pending wake-up byte (loop thread only)."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
