"""The master process: binds once, forks N single-threaded workers, supervises them.

Strategy: the master binds one `SO_REUSEPORT` socket per worker slot and per address (so
the kernel spreads connections evenly and a bind error reaches the terminal), forks a worker
per slot, and then only waits for signals with `sigtimedwait` — it never serves. A worker
that dies is replaced on the same slot sockets, so connections queued on them survive. TERM
and INT are forwarded (each worker stops gracefully) and awaited; USR1 is forwarded; HUP
re-reads the config and replaces the workers one at a time, each new worker reporting ready
on a pipe before its predecessor is told to stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import time
from collections.abc import Callable

from reactor.conn.listener import bind_tcp
from reactor.ops.settings import SETTINGS, Config, Reload, ServerConfig, listener_options
from reactor.ops.systemd import Notifier

WorkerMain = Callable[[Config, "Slot", Callable[[], None]], int]
MasterLog = Callable[..., None]
"""`log(event, level="info", **fields)`: one line of the master's error log."""

_HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
READY_TIMEOUT_S = 15.0
# A worker that dies sooner than this after starting is crashing: wait before the next try.
CRASH_WINDOW_S = 1.0
CRASH_BACKOFF_S = 1.0
# Restart-only in one process, but every reload starts fresh workers, which read them anew.
_PER_WORKER = frozenset({"server.pool_threads"})


Slot = tuple[list[socket.socket], dict[str, socket.socket]]
"""One worker's listening sockets: (socket-activated sockets, {address: bound socket})."""


def make_slots(activated: list[socket.socket], bound: dict[str, socket.socket],
               workers: int, backlog: int) -> list[Slot]:
    """Sockets for `workers` slots. Socket-activated sockets are shared by every worker; bound
    ones (made with SO_REUSEPORT) get a twin per further slot on the same host and port, so
    the kernel spreads new connections across the workers."""
    slots: list[Slot] = [(activated, bound)]
    try:
        for _ in range(workers - 1):
            twins: dict[str, socket.socket] = {}
            slots.append((activated, twins))
            for address, sock in bound.items():
                host, port = sock.getsockname()[:2]
                twins[address] = bind_tcp(host, port, backlog=backlog, reuse_port=True)
    except BaseException:
        close_slots(slots[1:])
        raise
    return slots


def close_slots(slots: list[Slot]) -> None:
    closed: set[int] = set()
    for activated, bound in slots:
        for sock in [*activated, *bound.values()]:
            if id(sock) not in closed:
                closed.add(id(sock))
                sock.close()


class Worker:
    """One forked worker: its pid, slot, start time and readiness pipe."""

    __slots__ = ("pid", "ready_fd", "slot", "started")

    def __init__(self, pid: int, slot: int, ready_fd: int) -> None:
        self.pid = pid
        self.slot = slot
        self.ready_fd = ready_fd
        self.started = time.monotonic()


class Master:
    """Supervises `len(slots)` workers running `worker_main(config, sockets, ready)`."""

    def __init__(self, config: Config, slots: list[Slot], worker_main: WorkerMain,
                 log: MasterLog, *, reload_config: Callable[[], Config] | None = None,
                 on_ready: Callable[[], None] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.slots = slots
        self.worker_main = worker_main
        self.log = log
        self.reload_config = reload_config
        self.on_ready = on_ready
        self.notifier = notifier if notifier is not None else Notifier({})
        self._next_ping = 0.0
        self.workers: dict[int, Worker] = {}
        self.stopping = False

    # ---- workers --------------------------------------------------------------------------
    def spawn(self, slot: int) -> Worker:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
                for sig in _HANDLED:
                    signal.signal(sig, signal.SIG_DFL)
                os.environ.pop("NOTIFY_SOCKET", None)  # only the master talks to systemd
                for index, (_shared, bound) in enumerate(self.slots):
                    if index != slot:  # other slots' twins; shared activated sockets stay
                        for sock in bound.values():
                            sock.close()
                code = self.worker_main(self.config, self.slots[slot],
                                        lambda: _say_ready(write_fd))
            finally:
                os._exit(code)
        os.close(write_fd)
        worker = Worker(pid, slot, read_fd)
        self.workers[pid] = worker
        return worker

    def wait_ready(self, worker: Worker, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Block until `worker` reports ready (True) or dies/times out (False)."""
        deadline = time.monotonic() + timeout_s
        fd = worker.ready_fd
        os.set_blocking(fd, False)
        while time.monotonic() < deadline:
            try:
                return bool(os.read(fd, 1))  # b"" (EOF): it exited before becoming ready
            except BlockingIOError:
                time.sleep(0.01)
        return False

    # ---- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            for slot in range(len(self.slots)):
                self.wait_ready(self.spawn(slot))
            self.log("workers-started", workers=len(self.workers),
                     pids=sorted(self.workers))
            if self.on_ready is not None:
                self.on_ready()
            self.notifier.ready(f"{len(self.workers)} workers")
            while self.workers or not self.stopping:
                info = signal.sigtimedwait(_HANDLED, 1.0)
                if info is not None:
                    self._dispatch(info.si_signo)
                self._reap()
                self._ping_watchdog()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            close_slots(self.slots)
        return 0

    def _ping_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        now = time.monotonic()
        if interval is not None and now >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = now + min(interval, 1.0)

    def _dispatch(self, signo: int) -> None:
        if signo in (signal.SIGTERM, signal.SIGINT):
            self.stop()
        elif signo == signal.SIGUSR1:
            self._forward(signal.SIGUSR1)
        elif signo == signal.SIGHUP:
            self.reload()

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.notifier.stopping()
        self.log("master-stopping", workers=len(self.workers))
        self._forward(signal.SIGTERM)
        deadline = (time.monotonic() + self.config.timeouts.drain_s
                    + self.config.timeouts.shutdown_s + 5.0)
        while self.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        self._forward(signal.SIGKILL)
        while self.workers:
            self._reap(block=True)

    def reload(self) -> None:
        """Re-read the config; replace workers one at a time on the same sockets."""
        if self.reload_config is None or self.stopping:
            return
        self.notifier.reloading()
        try:
            config = self.reload_config()
        except Exception as exc:  # the config error is already one line
            self.log("reload-failed", level="error", reason=str(exc))
            self.notifier.ready()
            return
        if (listener_options(config.server, config.proxy.protocol)
                != listener_options(self.config.server, self.config.proxy.protocol)):
            self.log("reload-listen-unchanged", level="warning",
                     reason="listen addresses change only on restart with workers > 1")
            config = _with_listen(config, self.config.server)
        later = [s.name for s in SETTINGS if s.reload is Reload.RESTART
                 and s.name not in _PER_WORKER
                 and getattr(getattr(config, s.section), s.key)
                 != getattr(getattr(self.config, s.section), s.key)]
        if later:
            self.log("reload-needs-restart", level="warning", settings=later,
                     message="these settings take effect at the next start")
        self.config = config
        for old in sorted(self.workers.values(), key=lambda w: w.slot):
            new = self.spawn(old.slot)
            if not self.wait_ready(new):
                self.log("reload-worker-failed", level="error", slot=old.slot, pid=new.pid)
                continue
            _kill(old.pid, signal.SIGTERM)
        self.log("reloaded", workers=len(self.slots))
        self.notifier.ready(f"{len(self.slots)} workers")

    def _forward(self, signo: int) -> None:
        for pid in list(self.workers):
            _kill(pid, signo)

    def _reap(self, *, block: bool = False) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.ready_fd)
            self._worker_exited(worker, status)
            if block:
                return

    def _worker_exited(self, worker: Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            return
        if any(w.slot == worker.slot for w in self.workers.values()):
            return  # replaced during a reload: its successor already serves the slot
        fields: dict[str, object] = {"pid": worker.pid, "slot": worker.slot, "exit_code": code}
        if code < 0:  # killed by a signal: a crash, an OOM kill, an operator's kill -9
            fields["signal"] = signal.Signals(-code).name
        self.log("worker-died", level="error" if code != 0 else "warning", **fields)
        if time.monotonic() - worker.started < CRASH_WINDOW_S:
            time.sleep(CRASH_BACKOFF_S)
        self.wait_ready(self.spawn(worker.slot))


def _say_ready(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"R")
        os.close(fd)


def _kill(pid: int, signo: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)


def _with_listen(config: Config, running: ServerConfig) -> Config:
    """`config` keeping the running listeners (they are bound once, by the master)."""
    server = dataclasses.replace(config.server, listen=running.listen,
                                 listeners=running.listeners)
    return dataclasses.replace(config, server=server)
