"""Streaming a request body into an application `Upload`, one pool job at a time.

Strategy: the body's pieces become jobs (`start`, `write`…, `finish`) run in order on the
pool with one in flight, so the upload sees them in order without locks. Pieces fed while a
job runs are coalesced: they join the write job waiting at the tail of the queue (joined into
one `bytes` on the worker), so a body that arrives as many small pieces costs one pool job per
batch, not one per piece. The backlog counts what the pump holds: each piece's wire size (the
framing that carried it, when the caller passes it, else its length) plus a fixed per-piece
overhead for the object itself, from `feed` until its write returns. Over
`BACKLOG_HIGH_BYTES` the connection stops reading until the backlog drains below
`BACKLOG_LOW_BYTES` (a slow disk slows the client, memory stays flat). `abort()` drops what is
queued and runs `Upload.abort` in the pool; it is safe at any time.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from reactor.app.types import Response, Upload
from reactor.loop import EventLoop

BACKLOG_HIGH_BYTES = 1024 * 1024
BACKLOG_LOW_BYTES = 256 * 1024
# What holding one piece costs beyond its bytes: the bytes object's header and its list slot.
PIECE_OVERHEAD_BYTES = 48

_START, _WRITE, _FINISH = 0, 1, 2


class _Job:
    """One queued call on the upload; a write job gathers pieces until it is submitted."""

    __slots__ = ("cost", "kind", "pieces")

    def __init__(self, kind: int, pieces: list[bytes] | None = None, cost: int = 0) -> None:
        self.kind = kind
        self.pieces = pieces
        self.cost = cost  # backlog bytes this job holds


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
        self._jobs: collections.deque[_Job] = collections.deque([_Job(_START)])
        self._running = False
        self._done = False
        self.backlog = 0  # bytes held (see the module docstring), queued or being written
        self.throttled = False
        self.queue_s = 0.0  # time the jobs waited for a pool thread, summed
        self._pump()

    def feed(self, chunk: bytes, wire_bytes: int | None = None) -> None:
        """Queue a piece of the body; `wire_bytes` is what it took on the wire, framing
        included (default: its length)."""
        if self._done or not chunk:
            return
        cost = (len(chunk) if wire_bytes is None else wire_bytes) + PIECE_OVERHEAD_BYTES
        jobs = self._jobs
        last = jobs[-1] if jobs else None
        if last is not None and last.kind == _WRITE and last.pieces is not None:
            last.pieces.append(chunk)  # not submitted yet: the piece joins its batch
            last.cost += cost
        else:
            jobs.append(_Job(_WRITE, [chunk], cost))
        self.backlog += cost
        if not self.throttled and self.backlog > BACKLOG_HIGH_BYTES:
            self.throttled = True
            self._throttle(True)
        self._pump()

    def end(self) -> None:
        if not self._done:
            self._jobs.append(_Job(_FINISH))
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
            self._loop.run_in_pool(self._upload.abort, (), _ignore, cleanup=True)

    def _pump(self) -> None:
        if self._running or not self._jobs or self._done:
            return
        job = self._jobs.popleft()
        fn: Callable[..., Any]
        args: tuple[Any, ...] = ()
        if job.kind == _WRITE:
            fn, args = _write_batch, (self._upload, job.pieces)
        elif job.kind == _START:
            fn = self._upload.start
        else:
            fn = self._upload.finish
        self._running = True
        submitted = self._loop.time()
        self._loop.run_in_pool(
            fn, args, lambda result, error, started: self._step(job, result, error,
                                                                started - submitted))

    def _step(self, job: _Job, result: Any, error: BaseException | None,
              waited_s: float) -> None:
        self._running = False
        self.queue_s += waited_s
        if self._done:  # aborted while this job ran: clean up now that it has returned
            self._loop.run_in_pool(self._upload.abort, (), _ignore, cleanup=True)
            return
        kind = job.kind
        if kind == _WRITE:
            self.backlog -= job.cost
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


def _write_batch(upload: Upload, pieces: list[bytes]) -> None:
    """On a worker: hand the pieces fed since the last write to the upload as one chunk."""
    upload.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))


def _ignore(_result: Any, _error: BaseException | None, _started: float) -> None:
    return None
