"""A rate-limited report: at most one per window, and what happened within it told when it
closes rather than with the next event (which may come much later, or never)."""

from __future__ import annotations

from collections.abc import Callable

from reactor.loop.eventloop import EventLoop
from reactor.loop.timers import TimerHandle


class ReportWindow:
    """Call `note()` on each event. The first event of a quiet period reports at once; later
    ones within `interval_s` are reported together when the window closes (a timer). `report`
    says what happened since its last call and returns False when there was nothing to say
    (no window starts then)."""

    __slots__ = ("_interval_s", "_loop", "_next", "_report", "_timer")

    def __init__(self, loop: EventLoop, interval_s: float, report: Callable[[], bool]) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._report = report
        self._next = 0.0
        self._timer: TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """Events wait for the window to close."""
        return self._timer is not None

    def note(self) -> None:
        if self._loop.time() >= self._next:
            self._close_window()
        elif self._timer is None:
            self._timer = self._loop.call_at(self._next, self._close_window)

    def _close_window(self) -> None:
        self.cancel()
        if self._report():
            self._next = self._loop.time() + self._interval_s

    def cancel(self) -> None:
        """Drop a pending report (the owner is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
