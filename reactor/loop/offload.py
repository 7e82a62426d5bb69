"""The thread-pool hand-off: run socket-free callables on worker threads, results on the loop.

Workers never touch sockets or loop state. A job is `(fn, args, callback)`; the worker runs
`fn(*args)` and hands `callback(result, error, started_at)` back to the loop thread through
`call_soon_threadsafe`, where `started_at` (monotonic) lets the caller measure queueing time.

At shutdown every job already queued still runs (the stop markers queue behind them) before
the threads are joined; a job submitted once shutdown has begun runs at once on the calling
thread, its callback too. So clean-up queued by a stopping server (an upload's abort that
removes its temp file) is done before the process exits, never dropped. When the join times
out (a handler stuck in the pool), the jobs still queued behind it would be lost with the
process: a clean-up job (`cleanup=True`) then runs on the stopping thread, and any other is
not run but its callback gets `PoolClosed`, so its owner can clean up (an upload whose write
never ran still removes its temp file).

A queued job can be taken back: `submit` returns a `PoolJob` whose `cancel()` (loop thread)
drops it if no thread has started it yet, so `pending` stops counting it at once (a client
that reset its queued request is no longer "waiting for a thread"). A thread and `cancel`
race for the job's one claim with an atomic `list.pop` (no lock): exactly one of them wins.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

PoolCallback = Callable[[Any, BaseException | None, float], None]
# (fn, args, callback, cleanup, claim): the claim holds one item until taken (see module)
Job = tuple[Callable[..., Any], tuple[Any, ...], PoolCallback, bool, list[bool]]
_STOP = None


class PoolClosed(Exception):
    """The job was never run: the pool was abandoned at shutdown with it still queued."""


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, BaseException | None]:
    """`fn(*args)` as (result, None), or (None, what it raised): the loop's callback decides
    what an error means."""
    try:
        return fn(*args), None
    except BaseException as exc:
        return None, exc


def _take(claim: list[bool]) -> bool:
    """Take a job's one claim (`list.pop` is atomic): False when it was taken first."""
    try:
        claim.pop()
    except IndexError:
        return False
    return True


class PoolJob:
    """A submitted job, as its owner may take it back (`ThreadPool.submit`)."""

    __slots__ = ("_claim", "_pool")

    def __init__(self, pool: ThreadPool, claim: list[bool]) -> None:
        self._pool = pool
        self._claim = claim

    def cancel(self) -> bool:
        """Loop thread: drop the job unless a thread already took it. True when dropped:
        it will not run and its callback will not be called."""
        if not _take(self._claim):
            return False  # running, done, or cancelled before
        self._pool._pending -= 1
        return True


class ThreadPool:
    """A fixed set of daemon threads fed from one `SimpleQueue` (lighter than a Future per job)."""

    def __init__(
        self, size: int, deliver: Callable[..., None], *, name: str = "reactor-pool"
    ) -> None:
        if size < 1:
            raise ValueError("thread pool size must be >= 1")
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._deliver = deliver
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        self._pending = 0  # loop thread only: jobs submitted and not yet delivered
        self._closed = False
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], callback: PoolCallback,
               *, cleanup: bool = False) -> PoolJob:
        """Queue `fn(*args)`; `callback` runs later on the loop thread (loop thread only).

        After `shutdown` began: run both now, on this thread. `cleanup`: a job that must run
        even when the pool is abandoned at shutdown (see the module docstring)."""
        if self._closed:
            started_at = time.monotonic()
            callback(*_call(fn, args), started_at)
            return PoolJob(self, [])
        self._pending += 1
        claim = [True]
        self._jobs.put((fn, args, callback, cleanup, claim))
        return PoolJob(self, claim)

    def _finished(self, callback: PoolCallback, result: Any, error: BaseException | None,
                  started_at: float) -> None:
        self._pending -= 1
        callback(result, error, started_at)

    def _work(self) -> None:
        jobs, deliver, finished = self._jobs, self._deliver, self._finished
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            fn, args, callback, _cleanup, claim = job
            if not _take(claim):  # cancelled while queued: not counted, not delivered
                del job, fn, args, callback
                continue
            started_at = time.monotonic()
            result, error = _call(fn, args)
            deliver(finished, callback, result, error, started_at)
            del job, fn, args, callback, result, error  # don't pin the last job's objects

    def shutdown(self, *, wait: bool = True, timeout_s: float = 5.0) -> None:
        """Stop the threads once the jobs queued so far have run; with `wait`, join them
        (at most `timeout_s`: a job stuck longer is left to its daemon thread)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        if wait:
            deadline = time.monotonic() + timeout_s
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if any(thread.is_alive() for thread in self._threads):
                self._abandon_queued()

    def _abandon_queued(self) -> None:
        """The threads did not finish in time: the jobs still queued will never run on them.
        A clean-up job runs now, on this thread; any other is dropped and its callback told
        (`PoolClosed`). The stop markers go back for the threads still busy."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                continue
            fn, args, callback, cleanup, claim = job
            if not _take(claim):
                continue  # cancelled
            started_at = time.monotonic()
            if cleanup:
                result, error = _call(fn, args)
            else:
                result, error = None, PoolClosed("the pool was abandoned at shutdown")
            self._finished(callback, result, error, started_at)
        for _ in self._threads:
            self._jobs.put(_STOP)
