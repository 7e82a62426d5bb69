"""`EventLoop.close` at a stop: clean-up handed to the pool is done, never dropped."""

from __future__ import annotations

import threading
from typing import Any

from reactor.loop import EventLoop


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
