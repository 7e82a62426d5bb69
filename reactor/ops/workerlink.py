"""What connects a forked worker to its master: a report pipe up, a lifeline pipe down.

Strategy
--------
Report pipe (one per worker, the worker writes): one line, `ready` once the worker serves,
or `error <reason>` when it cannot start -- or, after it started, when it fails for good. The
master reads it while waiting for the worker to start, and what is left in it once the worker
is reaped, so a worker that dies says why in the master's error log instead of an exit code
alone (the exception is otherwise lost in the forked child's `os._exit`).

Lifeline pipe (one for all workers, the master holds the only write end): the master never
writes to it; when the master is gone -- a SIGKILL, an OOM kill, a crash -- the kernel closes
the write end, the read end every worker watches in its loop becomes readable at EOF, and the
worker stops gracefully instead of serving on, orphaned. A pipe rather than Linux's
PR_SET_PDEATHSIG: portable, no ctypes, and the worker stops through its own loop (draining
like on SIGTERM) rather than by a signal's default action.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reactor.loop import EventLoop

READY = b"ready\n"
TICK_S = 0.25  # how often read_line calls its tick while it waits
ERROR = b"error "

# Exceptions whose message is already the one line for the operator (they name the file,
# key or address and the reason): their class name would only add noise.
_ONE_LINE = ("ListenError", "LogOpenError", "AppLoadError", "ConfigError", "TlsError",
             "ReloadError", "StartupError")


def reason_of(exc: BaseException) -> str:
    """The one-line reason a worker reports for `exc`."""
    text = " ".join(str(exc).split())
    if type(exc).__name__ in _ONE_LINE and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class WorkerLink:
    """The worker's side: which worker it is, what the master bound for it, its report
    pipe and the lifeline. Handed to `worker_main` in the forked child."""

    worker: int
    """The slot number (the `worker` label, metrics port + this)."""
    metrics: socket.socket | None
    """The slot's /metrics socket, bound by the master (None: metrics off)."""
    report_fd: int
    lifeline_fd: int
    counters: dict[str, int] = field(default_factory=dict)
    """Counts the master keeps for every worker (reloads), to start from."""

    def ready(self) -> None:
        """The worker serves: the master may go on (and retire a predecessor)."""
        self._write(READY)

    def failed(self, reason: str) -> None:
        """The worker cannot run on: `reason` reaches the master's error log."""
        self._write(ERROR + " ".join(reason.splitlines()).encode("utf-8", "replace") + b"\n")

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the master is gone: nobody to tell
            os.write(self.report_fd, data)

    def watch_master(self, loop: EventLoop, on_gone: Callable[[], None]) -> None:
        """Call `on_gone()` (once, on the loop) when the master process has exited."""
        fd = self.lifeline_fd

        def readable() -> None:
            try:
                data = os.read(fd, 64)
            except (BlockingIOError, InterruptedError):
                return
            if data:  # the master never writes; nothing to do with stray bytes
                return
            loop.remove_reader(fd)
            on_gone()

        loop.add_reader(fd, readable)


def read_line(fd: int, deadline: float, tick: Callable[[], None] | None = None
              ) -> bytes | None:
    """The first line on the pipe `fd` (ending in "\n"), or what came before EOF (without
    it); None when `deadline` passed first. Byte by byte: what follows the line stays in
    the pipe (for `leftover_reason`). `tick` is called at least every `TICK_S` meanwhile
    (the master's watchdog ping: a worker may take up to READY_TIMEOUT_S to start)."""
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if tick is not None:
            tick()
            remaining = min(remaining, TICK_S)
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        try:
            byte = os.read(fd, 1)
        except InterruptedError:
            continue
        if not byte:
            break
        data += byte
    return data


def read_report(fd: int, deadline: float, tick: Callable[[], None] | None = None
                ) -> str | None:
    """In the master: None once the worker on `fd` reported ready, else why it did not
    (its `error` line, that it exited first, or that `deadline` passed); `tick` as for
    `read_line`."""
    data = read_line(fd, deadline, tick)
    if data is None:
        return "it did not report ready in time"
    if not data.endswith(b"\n"):
        return _error_in(data) or "it exited before reporting ready"
    return None if data == READY else _error_in(data) or "it sent a garbled report"


def leftover_reason(fd: int) -> str | None:
    """In the master, once the worker is reaped: the `error` line it wrote, if any."""
    data = b""
    os.set_blocking(fd, False)
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            data += chunk
    for line in data.splitlines():
        found = _error_in(line)
        if found:
            return found
    return None


def _error_in(data: bytes) -> str | None:
    if data.startswith(ERROR):
        return data[len(ERROR):].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return None
