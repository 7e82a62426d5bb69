"""`EventLoop.close` at a stop: clean-up handed to the pool is done, never dropped."""

from __future__ import annotations

import threading
from typing import Any

from reactor.loop import EventLoop, PoolClosed


def test_close_runs_queued_jobs_and_what_their_results_schedule() -> None:
    """The upload-abort shape: a job in flight when the loop stops; its result callback
    (which would run on the loop) submits the clean-up. Both must be done by close()."""
    loop = EventLoop(pool_threads=1)
    release = threading.Event()
    ran: list[str] = []

    def cleanup() -> None:
        ran.append(f"cleanup on {threading.current_thread().name}")

    def after_write(_result: Any, _error: BaseException | None, _started: float) -> None:
        ran.append("write delivered")
        loop.run_in_pool(cleanup, (), lambda *_: ran.append("cleanup delivered"))

    loop.run_in_pool(release.wait, (5.0,), after_write)
    loop.run_in_pool(ran.append, ("queued job",), lambda *_: None)
    threading.Timer(0.05, release.set).start()
    loop.close()  # the loop never ran: nothing was delivered before this
    assert ran == ["queued job", "write delivered",
                   f"cleanup on {threading.current_thread().name}", "cleanup delivered"]


def test_a_job_submitted_after_close_runs_at_once() -> None:
    loop = EventLoop(pool_threads=2)
    loop.close()
    results: list[tuple[Any, BaseException | None]] = []
    loop.run_in_pool(lambda x: x * 2, (21,), lambda r, e, _s: results.append((r, e)))
    loop.run_in_pool(lambda: 1 // 0, (), lambda r, e, _s: results.append((r, e)))
    assert results[0] == (42, None)
    assert isinstance(results[1][1], ZeroDivisionError)


def test_close_past_its_wait_runs_queued_cleanup_and_tells_the_rest() -> None:
    """A job that never returns holds the only thread past `pool_wait_s`: the jobs queued
    behind it were lost with the process (an upload's abort, its temp file left behind).
    A clean-up job runs on the closing thread; any other is not run, and its callback gets
    PoolClosed, so its owner can clean up (through the pool, now inline)."""
    loop = EventLoop(pool_threads=1)
    stuck = threading.Event()
    ran: list[str] = []
    told: list[BaseException | None] = []

    def write_done(_result: Any, error: BaseException | None, _started: float) -> None:
        told.append(error)
        loop.run_in_pool(ran.append, ("abort after the write",), lambda *_: None,
                         cleanup=True)

    try:
        loop.run_in_pool(stuck.wait, (), lambda *_: None)
        loop.run_in_pool(ran.append, ("handler",), lambda *_: None)
        loop.run_in_pool(ran.append, ("write",), write_done)
        loop.run_in_pool(ran.append, ("abort",), lambda *_: ran.append("abort delivered"),
                         cleanup=True)
        loop.close(pool_wait_s=0.1)
        assert ran == ["abort after the write", "abort", "abort delivered"]
        assert len(told) == 1 and isinstance(told[0], PoolClosed)
    finally:
        stuck.set()
