"""The event loop: timers, thread-safe call-ins, the pool hand-off, I/O, signals, hooks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from reactor.loop import EventLoop
from reactor.loop.timers import TimerHandle, TimerHeap
from tests.conftest import EVENT_WAIT_S


@pytest.fixture
def loop():  # type: ignore[no-untyped-def]
    loop = EventLoop(pool_threads=2)
    yield loop
    loop.close()


def run_until(loop: EventLoop, timeout_s: float = 5.0) -> None:
    """Run the loop; stop it after `timeout_s` so a broken test fails instead of hanging."""
    guard = loop.call_later(timeout_s, loop.stop)
    loop.run_forever()
    guard.cancel()


def test_timers_fire_in_deadline_order_and_cancelled_ones_never(loop):
    fired: list[str] = []
    loop.call_later(0.03, fired.append, "late")
    loop.call_later(0.01, fired.append, "early")
    loop.call_later(0.02, fired.append, "cancelled").cancel()
    loop.call_later(0.05, loop.stop)
    run_until(loop)
    assert fired == ["early", "late"]


def test_timer_heap_compacts_when_cancelled_entries_dominate():
    heap = TimerHeap()
    handles = [heap.push(TimerHandle(float(i), print, ())) for i in range(1000)]
    for handle in handles[:900]:
        handle.cancel()
    assert len(heap) == 100
    assert len(heap._heap) < 1000  # rebuilt, not left to grow
    assert heap.next_deadline() == 900.0
    assert [h.when for h in heap.pop_due(949.0)] == [float(i) for i in range(900, 950)]


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop):
    # Nothing is due for a minute, so only the call-in itself can end the loop's select()
    # before then: the callback running within EVENT_WAIT_S means the loop was woken.
    got: list[str] = []
    running, ran = threading.Event(), threading.Event()
    guard = loop.call_later(60.0, loop.stop)  # ends a broken test's loop, eventually
    loop.call_soon(running.set)
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        assert running.wait(EVENT_WAIT_S)
        time.sleep(0.05)  # let it go to sleep in select()
        loop.call_soon_threadsafe(got.append, "hello")
        loop.call_soon_threadsafe(ran.set)
        assert ran.wait(EVENT_WAIT_S), "the loop slept through call_soon_threadsafe"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(EVENT_WAIT_S)
    guard.cancel()
    assert got == ["hello"] and not runner.is_alive()


def test_pool_results_and_errors_come_back_on_the_loop_thread(loop):
    results: list[tuple] = []
    loop_thread = threading.get_ident()

    def done(result, error, started_at):  # type: ignore[no-untyped-def]
        results.append((result, type(error), threading.get_ident() == loop_thread))
        if len(results) == 2:
            loop.stop()

    loop.run_in_pool(lambda x: (x * 2, threading.get_ident() != loop_thread), (21,), done)
    loop.run_in_pool(lambda: 1 / 0, (), done)
    run_until(loop)
    assert sorted(results, key=repr) == sorted(
        [((42, True), type(None), True), (None, ZeroDivisionError, True)], key=repr)
    assert loop.pool.pending == 0


def test_a_queued_pool_job_taken_back_is_not_run_nor_counted(loop):
    """`cancel()` drops a job no thread has started: `pending` drops at once, it never runs
    and its callback is never called; a job already running cannot be taken back."""
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    delivered: list[object] = []

    def block(name: str) -> str:
        ran.append(name)
        started.set()
        release.wait(5)
        return name

    def done(result, error, started_at):  # type: ignore[no-untyped-def]
        delivered.append(result)
        if len(delivered) == 3:
            loop.stop()

    running = [loop.run_in_pool(block, (f"busy-{i}",), done) for i in range(2)]
    assert started.wait(5) and wait_for(lambda: len(ran) == 2)  # both threads are taken
    queued = loop.run_in_pool(ran.append, ("gone",), done)
    kept = loop.run_in_pool(lambda: "kept", (), done)
    assert loop.pool.pending == 4
    assert queued.cancel() is True
    assert loop.pool.pending == 3
    assert queued.cancel() is False  # once only
    assert running[0].cancel() is False and loop.pool.pending == 3
    release.set()
    run_until(loop)
    assert sorted(str(x) for x in delivered) == ["busy-0", "busy-1", "kept"]
    assert "gone" not in ran and loop.pool.pending == 0
    assert kept.cancel() is False  # done


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_readers_and_writers_follow_the_socket(loop):
    left, right = socket.socketpair()
    left.setblocking(False)
    received: list[bytes] = []

    def readable() -> None:
        received.append(left.recv(100))
        loop.remove_reader(left)
        loop.stop()

    loop.add_reader(left, readable)
    loop.call_later(0.01, right.send, b"ping")
    run_until(loop)
    assert received == [b"ping"]
    left.close()
    right.close()


def test_a_failing_callback_is_reported_and_the_loop_goes_on(loop):
    seen: list[str] = []
    loop.set_exception_handler(lambda context, exc: seen.append(f"{context}: {exc}"))
    loop.call_soon(lambda: 1 / 0)
    loop.call_later(0.01, loop.stop)
    run_until(loop)
    assert seen == ["callback: division by zero"]


def test_a_timer_scheduled_by_a_before_select_hook_wakes_the_loop(loop):
    fired: list[float] = []
    armed: list[bool] = []

    guard_fired: list[bool] = []

    def fire() -> None:
        fired.append(time.monotonic())
        loop.stop()

    def hook() -> None:
        if not armed:
            armed.append(True)
            loop.call_later(0.02, fire)

    def guard() -> None:
        guard_fired.append(True)
        loop.stop()

    loop.add_before_select(hook)
    # A select() timeout computed before the hook ran would sleep until this guard.
    guard_handle = loop.call_later(EVENT_WAIT_S, guard)
    loop.run_forever()
    guard_handle.cancel()
    assert fired and not guard_fired  # the hook's timer ended the wait, not the guard


def test_signals_run_their_handler_on_the_loop(loop):
    got: list[str] = []
    def on_usr1() -> None:
        got.append("usr1")
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    try:
        loop.call_later(0.02, os.kill, os.getpid(), signal.SIGUSR1)
        run_until(loop)
    finally:
        loop.remove_signal_handlers()
    assert got == ["usr1"]


@contextlib.contextmanager
def loop_on_thread(loop: EventLoop) -> Iterator[threading.Thread]:
    """Run the loop on a thread for the block (at most a minute); stop and join it after."""
    runner = threading.Thread(target=loop.run_forever)
    guard = loop.call_later(60.0, loop.stop)
    runner.start()
    try:
        yield runner
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(EVENT_WAIT_S)
        guard.cancel()
    assert not runner.is_alive()


@contextlib.contextmanager
def watched_pair(loop: EventLoop, on_read: Callable[[socket.socket], None]
                 ) -> Iterator[socket.socket]:
    """A socketpair whose one end the loop reads (`on_read(it)`); yields the other end."""
    ours, theirs = socket.socketpair()
    loop.add_reader(ours, lambda: on_read(ours))
    try:
        yield theirs
    finally:
        loop.forget(ours)
        ours.close()
        theirs.close()


def loop_cpu_s(runner: threading.Thread) -> Callable[[], float]:
    """A reader of the CPU seconds the loop thread has used so far."""
    clock = time.pthread_getcpuclockid(runner.ident)  # type: ignore[arg-type]
    return lambda: time.clock_gettime(clock)


@pytest.mark.parametrize("busy_poll_s", [0.0, 0.1])
def test_busy_poll_polls_for_its_window_after_io_then_sleeps(loop, busy_poll_s):
    # One byte arrives; with the window set, the loop keeps polling (burning CPU) for about
    # 0.1 s of the 0.6 s that follow, then sleeps; without it, it sleeps at once.
    got: list[bytes] = []
    loop.set_busy_poll(busy_poll_s)
    with watched_pair(loop, lambda ours: got.append(ours.recv(16))) as theirs, \
            loop_on_thread(loop) as runner:
        time.sleep(0.2)  # asleep in select(): nothing is due and nothing has happened
        cpu_s = loop_cpu_s(runner)
        before = cpu_s()
        theirs.send(b"x")
        time.sleep(0.6)
        cpu = cpu_s() - before
    assert got == [b"x"]
    if busy_poll_s:
        assert 0.02 < cpu < 0.35, f"{cpu:.3f} s of CPU: the window was not kept (or not closed)"
    else:
        assert cpu < 0.02, f"{cpu:.3f} s of CPU for one byte"


def test_busy_poll_keeps_timers_and_call_ins_on_time(loop):
    # A long window must not hold back a timer due inside it, nor a call from another thread.
    fired: dict[str, float] = {}
    loop.set_busy_poll(5.0)

    def on_read(ours: socket.socket) -> None:
        ours.recv(16)
        start = time.monotonic()
        loop.call_later(0.05, lambda: fired.setdefault("timer", time.monotonic() - start))

    called = threading.Event()
    with watched_pair(loop, on_read) as theirs, loop_on_thread(loop):
        theirs.send(b"x")
        time.sleep(0.5)
        sent = time.monotonic()
        loop.call_soon_threadsafe(lambda: (fired.setdefault("call", time.monotonic() - sent),
                                           called.set()))
        assert called.wait(EVENT_WAIT_S)
    assert 0.05 <= fired["timer"] < 0.3 and fired["call"] < 0.2, fired


def test_busy_poll_window_shrinks_when_idle_and_grows_back_under_ping_pong(loop):
    # Bytes 0.25 s apart (longer than the 0.1 s window): each quiet period halves the window
    # until the loop stops polling. Bytes 10 ms apart: a wait that ends by I/O within 0.1 s
    # grows the window again until polling catches the next byte, and the loop polls
    # through the gaps.
    loop.set_busy_poll(0.1)
    with watched_pair(loop, lambda ours: ours.recv(16)) as theirs, \
            loop_on_thread(loop) as runner:
        cpu_s = loop_cpu_s(runner)

        def cpu_while_sending(gap_s: float, count: int) -> float:
            before = cpu_s()
            for _ in range(count):
                theirs.send(b"x")
                time.sleep(gap_s)
            return cpu_s() - before

        first = cpu_while_sending(0.25, 2)  # the full window after each byte, then halves
        cpu_while_sending(0.25, 4)  # 0.05, 0.025, 0.0125, then none
        quiet = cpu_while_sending(0.25, 2)
        window_when_quiet = loop._poll_window
        cpu_while_sending(0.01, 10)  # from nothing up to a window that spans the gaps
        busy = cpu_while_sending(0.01, 30)
        window_when_busy = loop._poll_window
    assert window_when_quiet == 0.0 and 0.0125 <= window_when_busy <= 0.1
    assert first > 0.05, f"{first:.3f} s: the first windows were not polled"
    assert quiet < 0.02, f"{quiet:.3f} s of CPU for two bytes: still polling when idle"
    assert busy > 0.1, f"{busy:.3f} s over 0.3 s of ping-pong: not polling through the gaps"
