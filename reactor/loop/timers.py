"""Timers: a heap of handles with lazy cancellation."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class TimerHandle:
    """A callback scheduled at a monotonic deadline; `cancel()` marks it to be skipped."""

    __slots__ = ("_owner", "args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._owner: TimerHeap | None = None

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _noop  # drop references (a connection, say) as soon as possible
        self.args = ()
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.note_cancelled()


def _noop(*_args: Any) -> None:
    return None


class TimerHeap:
    """Deadlines in a heap. Cancelled entries stay until popped, unless they dominate the heap.

    Connections avoid cancel-and-reschedule on every request: they keep one timer per
    connection and move their own deadline; the timer re-arms itself when it fires early.
    """

    __slots__ = ("_cancelled", "_heap")

    # Rebuild when at least this many entries are cancelled and they are over half the heap.
    _COMPACT_MIN = 256

    def __init__(self) -> None:
        self._heap: list[TimerHandle] = []
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def push(self, handle: TimerHandle) -> TimerHandle:
        handle._owner = self
        heapq.heappush(self._heap, handle)
        return handle

    def note_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled >= self._COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._heap = [h for h in self._heap if not h.cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0].when if heap else None

    def pop_due(self, now: float) -> list[TimerHandle]:
        """Remove and return the live handles whose deadline is `now` or earlier."""
        heap = self._heap
        due: list[TimerHandle] = []
        while heap and heap[0].when <= now:
            handle = heapq.heappop(heap)
            if handle.cancelled:
                self._cancelled -= 1
            else:
                handle._owner = None  # fired: a late cancel() must not count it again
                due.append(handle)
        return due
