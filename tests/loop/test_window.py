"""ReportWindow: one report per window at most, and the window's events told when it closes."""

from __future__ import annotations

from reactor.loop import EventLoop
from reactor.loop.window import ReportWindow


def test_a_window_reports_at_once_then_once_when_it_closes() -> None:
    loop = EventLoop()
    now = [100.0]
    loop.time = lambda: now[0]  # type: ignore[method-assign]
    events: list[int] = []
    told: list[int] = []

    def report() -> bool:
        if not events:
            return False
        told.append(len(events))
        events.clear()
        return True

    window = ReportWindow(loop, 10.0, report)
    try:
        for _ in range(3):
            events.append(1)
            window.note()
        assert told == [1] and window.pending  # the first at once, two wait
        now[0] += 10.0
        loop.call_soon(lambda: None)  # a pass that does not wait for I/O
        loop._run_once()
        assert told == [1, 2] and not window.pending  # told when the window closed
        now[0] += 30.0
        events.append(1)
        window.note()  # a quiet period passed: at once again
        assert told == [1, 2, 1]
        events.append(1)
        window.note()
        window.cancel()  # the owner closes: nothing more is said
        assert not window.pending and told == [1, 2, 1]
    finally:
        loop.close()
