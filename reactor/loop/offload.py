"""The thread-pool hand-off: run socket-free callables on worker threads, results on the loop.

Workers never touch sockets or loop state. A job is `(fn, args, callback)`; the worker runs
`fn(*args)` and hands `callback(result, error, started_at)` back to the loop thread through
`call_soon_threadsafe`, where `started_at` (monotonic) lets the caller measure queueing time.

At shutdown every job already queued still runs (the stop markers queue behind them) before
the threads are joined; a job submitted once shutdown has begun runs at once on the calling
thread, its callback too. So clean-up queued by a stopping server (an upload's abort that
removes its temp file) is done before the process exits, never dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

PoolCallback = Callable[[Any, BaseException | None, float], None]
Job = tuple[Callable[..., Any], tuple[Any, ...], PoolCallback]
_STOP = None


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

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], callback: PoolCallback) -> None:
        """Queue `fn(*args)`; `callback` runs later on the loop thread (loop thread only).

        After `shutdown` began: run both now, on this thread."""
        if self._closed:
            started_at = time.monotonic()
            try:
                result, error = fn(*args), None
            except BaseException as exc:
                result, error = None, exc
            callback(result, error, started_at)
            return
        self._pending += 1
        self._jobs.put((fn, args, callback))

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
            fn, args, callback = job
            started_at = time.monotonic()
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the loop, which decides what it means
                result, error = None, exc
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
