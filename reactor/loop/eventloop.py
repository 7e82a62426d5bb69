"""The event loop: one selector, a timer heap, a ready queue, thread-safe call-ins, signals.

Strategy: each pass computes the `select()` timeout from the ready queue and the next timer,
runs the before-select hooks (log flushing), waits, dispatches I/O callbacks, then the
thread-safe queue, due timers and the ready queue. Only the loop thread runs any of it; other
threads reach it through `call_soon_threadsafe` (a deque plus one byte on the waker). With
`set_busy_poll`, a wait that follows a pass with I/O first polls without sleeping, for an
adaptive window (`_busy_poll`).
"""

from __future__ import annotations

import collections
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from reactor.loop.offload import PoolCallback, PoolJob, ThreadPool
from reactor.loop.timers import TimerHandle, TimerHeap
from reactor.loop.waker import Waker

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
ExceptionHandler = Callable[[str, BaseException], None]
ReportHandler = Callable[[str, dict[str, Any]], None]
"""`(event, fields)`: an operational condition worth one warning line (the server logs it)."""
_CLOSE_DRAIN_ROUNDS = 16
# The smallest busy-poll window, as a share of the longest: shrinking below it stops polling,
# growing from nothing starts there.
_POLL_MIN_SHARE = 1 / 8


def _print_report(event: str, fields: dict[str, Any]) -> None:
    print(f"reactor loop: {event} {fields}", file=sys.stderr)


def _print_exception(context: str, exc: BaseException) -> None:
    print(f"reactor loop: error in {context}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


class EventLoop:
    """A selectors loop. Register a file object once; flip read/write interest as needed."""

    def __init__(self, *, pool_threads: int = 4) -> None:
        self._selector = selectors.DefaultSelector()
        self._interest: dict[int, list[Callable[[], None] | None]] = {}
        self._ready: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]]
        self._ready = collections.deque()
        self._threadsafe: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]]
        self._threadsafe = collections.deque()
        self._timers = TimerHeap()
        self._waker = Waker()
        self._selector.register(self._waker.read_fd, _READ, [self._waker.drain, None])
        self._before_select: list[Callable[[], None]] = []
        self._signal_handlers: dict[int, Callable[[], None]] = {}
        self._pending_signals: list[int] = []
        self._stopping = False
        self._exception_handler: ExceptionHandler = _print_exception
        self._report_handler: ReportHandler = _print_report
        self._pool = ThreadPool(pool_threads, self.call_soon_threadsafe)
        self.time = time.monotonic
        # Opt-in busy polling (server.busy_poll_us): the longest window, the current one
        # (adapted, see `_busy_poll`), and whether the next wait follows a pass with I/O.
        self.busy_poll_s = 0.0
        self._poll_window = 0.0
        self._poll_next = False

    # ---- I/O registration -------------------------------------------------------------
    def add_reader(self, fd: Any, callback: Callable[[], None]) -> None:
        self._set_interest(fd, 0, callback)

    def add_writer(self, fd: Any, callback: Callable[[], None]) -> None:
        self._set_interest(fd, 1, callback)

    def remove_reader(self, fd: Any) -> None:
        self._set_interest(fd, 0, None)

    def remove_writer(self, fd: Any) -> None:
        self._set_interest(fd, 1, None)

    def _set_interest(self, fd: Any, slot: int, callback: Callable[[], None] | None) -> None:
        # Our own fd -> handlers map: asking the selector (`get_key`) about a socket it does
        # not know raises a KeyError whose message formats the socket's repr -- two syscalls
        # and ~9 µs on every new connection.
        fileno = fd if type(fd) is int else fd.fileno()
        handlers = self._interest.get(fileno)
        if handlers is None:
            if callback is None:
                return
            handlers = [None, None]
            handlers[slot] = callback
            self._selector.register(fileno, _READ if slot == 0 else _WRITE, handlers)
            self._interest[fileno] = handlers
            return
        if handlers[slot] is callback:
            return
        handlers[slot] = callback
        mask = (_READ if handlers[0] else 0) | (_WRITE if handlers[1] else 0)
        if mask:
            self._selector.modify(fileno, mask, handlers)
        else:
            self._selector.unregister(fileno)
            del self._interest[fileno]

    def forget(self, fd: Any) -> None:
        """Drop every interest in `fd` (before closing it)."""
        fileno = fd if type(fd) is int else fd.fileno()
        if fileno >= 0 and self._interest.pop(fileno, None) is not None:
            self._selector.unregister(fileno)

    # ---- callbacks and timers ---------------------------------------------------------
    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule `callback(*args)` on the loop thread; safe from any thread."""
        self._threadsafe.append((callback, args))
        self._waker.wake()

    def call_later(self, delay_s: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._timers.push(TimerHandle(self.time() + delay_s, callback, args))

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._timers.push(TimerHandle(when, callback, args))

    def run_in_pool(self, fn: Callable[..., Any], args: tuple[Any, ...],
                    callback: PoolCallback, *, cleanup: bool = False) -> PoolJob:
        """Run `fn(*args)` on a worker; `callback(result, error, started_at)` on the loop.
        `cleanup`: run it even if the pool is abandoned at exit (ThreadPool.submit). The
        `PoolJob` returned can take it back while no thread has started it."""
        return self._pool.submit(fn, args, callback, cleanup=cleanup)

    @property
    def pool(self) -> ThreadPool:
        return self._pool

    def add_before_select(self, hook: Callable[[], None]) -> None:
        """Run `hook()` before each wait: where buffered log lines are flushed."""
        self._before_select.append(hook)

    def set_exception_handler(self, handler: ExceptionHandler) -> None:
        self._exception_handler = handler

    def set_report_handler(self, handler: ReportHandler) -> None:
        """Where `report` goes: the server's error log (as a warning)."""
        self._report_handler = handler

    def report(self, event: str, fields: dict[str, Any]) -> None:
        """A condition below the loop's users that an operator must hear about (a listener
        out of file descriptors); lower layers have no log of their own. Loop thread."""
        try:
            self._report_handler(event, fields)
        except Exception as exc:
            _print_exception(f"report {event}", exc)

    # ---- signals ------------------------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callable[[], None]) -> None:
        """Run `callback()` on the loop after `signum` arrives (main thread only).

        The C-level handler only records the signal; the wakeup fd interrupts `select()`.
        """
        self._signal_handlers[signum] = callback
        signal.set_wakeup_fd(self._waker.write_fd, warn_on_full_buffer=False)
        signal.signal(signum, self._record_signal)

    def remove_signal_handlers(self) -> None:
        for signum in self._signal_handlers:
            signal.signal(signum, signal.SIG_DFL)
        self._signal_handlers.clear()
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass  # not the main thread

    def _record_signal(self, signum: int, _frame: object) -> None:
        self._pending_signals.append(signum)

    # ---- running ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        self._waker.wake()

    def run_forever(self) -> None:
        self._stopping = False
        while not self._stopping:
            self._run_once()

    def _run_once(self) -> None:
        for hook in self._before_select:  # first: a hook may schedule a timer
            self._guarded(hook, (), "before-select hook")
        if self._ready or self._threadsafe or self._pending_signals:
            timeout: float | None = 0
        else:
            deadline = self._timers.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.time())
        if self._poll_next and timeout != 0:
            events = self._busy_poll(timeout)
        else:
            events = self._selector.select(timeout)
        if events and self.busy_poll_s:
            self._poll_next = True
        for key, mask in events:
            handlers = key.data
            # `_guarded` spelled out: this runs for every ready socket
            if mask & _READ:
                reader = handlers[0]
                if reader is not None:
                    try:
                        reader()
                    except Exception as exc:
                        self._failed("reader", exc)
            if mask & _WRITE:
                writer = handlers[1]  # read again: the reader may have removed it
                if writer is not None:
                    try:
                        writer()
                    except Exception as exc:
                        self._failed("writer", exc)
        if self._pending_signals:
            self._dispatch_signals()
        threadsafe = self._threadsafe
        while threadsafe:
            callback, args = threadsafe.popleft()
            self._guarded(callback, args, "thread-safe callback")
        for handle in self._timers.pop_due(self.time()):
            self._guarded(handle.callback, handle.args, "timer")
        ready = self._ready
        for _ in range(len(ready)):  # only what was queued before this pass
            callback, args = ready.popleft()
            self._guarded(callback, args, "callback")

    def set_busy_poll(self, seconds: float) -> None:
        """Poll without sleeping for up to `seconds` after a pass with I/O (0: never)."""
        self.busy_poll_s = self._poll_window = max(0.0, seconds)
        self._poll_next = False

    def _busy_poll(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """The wait after a pass with I/O: poll without sleeping for the current window
        (never past the next timer), then wait as usual; adapt the window to what happened.

        Why: a client that sends its next request right after reading an answer (one
        connection, request after request) finds the loop asleep each time, and waking a
        sleeping thread costs more than the request itself (on this VM, echo over one
        connection: 10.5k req/s asleep, 19-21k polling for 100 µs). The price is CPU, so the
        window adapts the way KVM's halt polling does: a wait that ended by I/O within
        `busy_poll_s` doubles it (polling would have caught that I/O), a longer one halves
        it, down to not polling at all: a server that is mostly idle stops spinning after a
        few quiet periods; one in a request-after-request exchange polls just long enough to
        catch the next request.
        """
        self._poll_next = False
        select = self._selector.select
        window = self._poll_window
        now = start = self.time()
        if window:
            until = start + (window if timeout is None or window < timeout else timeout)
            events = select(0)
            while not events and now < until:
                events = select(0)
                now = self.time()
            if events:
                return events  # the window paid
        events = select(None if timeout is None else max(0.0, timeout - (now - start)))
        limit = self.busy_poll_s
        if self.time() - start > limit:  # however it ended (I/O, a timer): too long to poll
            if window:
                window /= 2
                self._poll_window = window if window >= limit * _POLL_MIN_SHARE else 0.0
        elif events:  # I/O that a longer window would have caught
            self._poll_window = min(limit, max(window * 2, limit * _POLL_MIN_SHARE))
        return events

    def _dispatch_signals(self) -> None:
        pending, self._pending_signals = self._pending_signals, []
        for signum in pending:
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self._guarded(handler, (), f"signal {signum} handler")

    def _guarded(self, callback: Callable[..., Any], args: tuple[Any, ...], context: str) -> None:
        try:
            callback(*args)
        except Exception as exc:  # one bad callback never stops the loop
            self._failed(context, exc)

    def _failed(self, context: str, exc: Exception) -> None:
        try:
            self._exception_handler(context, exc)
        except Exception:
            _print_exception(context, exc)

    def close(self, *, pool_wait_s: float = 5.0) -> None:
        """Join the pool (at most `pool_wait_s`: a job stuck longer is left to its daemon
        thread), then run what it handed back and anything still scheduled.

        After the loop stopped, pool results arrive with no loop to deliver them; a result
        may be what finishes a clean-up (an upload aborted while one of its writes ran
        schedules its abort from that write's callback), so they run here, on the stopping
        thread, with the pool now running jobs inline.
        """
        self._pool.shutdown(wait=True, timeout_s=pool_wait_s)
        for _ in range(_CLOSE_DRAIN_ROUNDS):  # a callback may schedule another; not forever
            if not self._threadsafe and not self._ready:
                break
            while self._threadsafe:
                callback, args = self._threadsafe.popleft()
                self._guarded(callback, args, "thread-safe callback")
            for _ in range(len(self._ready)):
                callback, args = self._ready.popleft()
                self._guarded(callback, args, "callback")
        self._selector.close()
        self._waker.close()
