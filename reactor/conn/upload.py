"""Streaming a request body into an application `Upload`, one pool job at a time.

Strategy: the body's pieces become jobs (`start`, `write`…, `finish`) run in order on the
pool with one in flight, so the upload sees them in order without locks. Bytes waiting in
the queue are counted; over `BACKLOG_HIGH_BYTES` the connection stops reading until the
queue drains below `BACKLOG_LOW_BYTES` (a slow disk slows the client, memory stays flat).
`abort()` drops what is queued and runs `Upload.abort` in the pool; it is safe at any time.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from reactor.app.types import Response, Upload
from reactor.loop import EventLoop

BACKLOG_HIGH_BYTES = 1024 * 1024
BACKLOG_LOW_BYTES = 256 * 1024

_START, _WRITE, _FINISH = 0, 1, 2


class UploadPump:
    """Feeds one request body to one `Upload`; reports back through three callbacks."""

    __slots__ = ("_done", "_failed", "_finished", "_jobs", "_loop", "_refused", "_running",
                 "_started", "_throttle", "_upload", "backlog", "queue_s", "throttled")

    def __init__(self, loop: EventLoop, upload: Upload, *,
                 started: Callable[[], None], refused: Callable[[Response], None],
                 finished: Callable[[Response], None],
                 failed: Callable[[BaseException], None],
                 throttle: Callable[[bool], None]) -> None:
        self._loop = loop
        self._upload = upload
        self._started = started
        self._refused = refused
        self._finished = finished
        self._failed = failed
        self._throttle = throttle
        self._jobs: collections.deque[tuple[int, Callable[..., Any], tuple[Any, ...]]]
        self._jobs = collections.deque([(_START, upload.start, ())])
        self._running = False
        self._done = False
        self.backlog = 0
        self.throttled = False
        self.queue_s = 0.0  # time the jobs waited for a pool thread, summed
        self._pump()

    def feed(self, chunk: bytes) -> None:
        if self._done:
            return
        self._jobs.append((_WRITE, self._upload.write, (chunk,)))
        self.backlog += len(chunk)
        if not self.throttled and self.backlog > BACKLOG_HIGH_BYTES:
            self.throttled = True
            self._throttle(True)
        self._pump()

    def end(self) -> None:
        if not self._done:
            self._jobs.append((_FINISH, self._upload.finish, ()))
            self._pump()

    def abort(self) -> None:
        """The body will never complete: drop queued pieces, let the upload clean up.

        `Upload.abort` runs after the job in flight (if any) returns, never beside it: the
        upload's methods are never called concurrently.
        """
        if self._done:
            return
        self._done = True
        self._jobs.clear()
        if not self._running:
            self._loop.run_in_pool(self._upload.abort, (), _ignore)

    def _pump(self) -> None:
        if self._running or not self._jobs or self._done:
            return
        kind, fn, args = self._jobs.popleft()
        self._running = True
        submitted = self._loop.time()
        self._loop.run_in_pool(
            fn, args, lambda result, error, started: self._step(kind, args, result, error,
                                                                 started - submitted))

    def _step(self, kind: int, args: tuple[Any, ...], result: Any,
              error: BaseException | None, waited_s: float) -> None:
        self._running = False
        self.queue_s += waited_s
        if self._done:  # aborted while this job ran: clean up now that it has returned
            self._loop.run_in_pool(self._upload.abort, (), _ignore)
            return
        if kind == _WRITE:
            self.backlog -= len(args[0])
            if self.throttled and self.backlog < BACKLOG_LOW_BYTES:
                self.throttled = False
                self._throttle(False)
        if error is not None:
            self.abort()
            self._failed(error)
        elif kind == _START and result is not None:
            self.abort()
            self._refused(result)
        elif kind == _START:
            self._started()
            self._pump()
        elif kind == _FINISH:
            self._done = True
            self._finished(result)
        else:
            self._pump()


def _ignore(_result: Any, _error: BaseException | None, _started: float) -> None:
    return None
