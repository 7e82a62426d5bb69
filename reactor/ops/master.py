"""The master process: binds once, forks N single-threaded workers, supervises them.

Strategy: the master binds one `SO_REUSEPORT` socket per worker slot and per address (so
the kernel spreads connections evenly and a bind error reaches the terminal) and each slot's
/metrics socket, forks a worker per slot, and then only waits for signals with
`sigtimedwait` -- it never serves. Each worker reports on a pipe that it serves, or why it
cannot (reactor.ops.workerlink); a worker that fails at start-up fails `reactor serve` with
its reason. A worker that dies later is replaced on the same slot sockets (so connections
queued on them survive), after a back-off that doubles while it keeps dying right away.
While a slot waits out a back-off and another slot's worker serves, the master closes the
slot's sockets (else the kernel would go on queueing a share of new connections where nobody
accepts) and binds them again for the respawn; socket-activated sockets are shared by every
worker, so they never need it.
TERM, INT and QUIT stop the workers gracefully and wait for them; USR1 reopens the master's
log and is forwarded; HUP re-reads the config, starts a full set of new workers with it, and
only once every one of them serves stops the old ones -- or, if one cannot start, stops the
new ones and keeps the old configuration (`reload-failed`, with the worker's reason).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from reactor import __version__
from reactor.conn.listener import bind_tcp
from reactor.ops.assembly import (
    UPGRADE_MESSAGE,
    bind_metrics,
    bind_metrics_at,
    changed_settings,
    upgraded_version,
)
from reactor.ops.daemon import is_stream_target
from reactor.ops.kinds import format_listen, parse_listen
from reactor.ops.listeners import ListenError, close_sockets
from reactor.ops.server import LogOpenError, ServerLog, hold_signals, open_log, take_held
from reactor.ops.settings import (
    Config,
    keep_running,
    listener_options,
    pending_restart,
)
from reactor.ops.systemd import STOP_SLACK_S, Notifier
from reactor.ops.tls import pairs
from reactor.ops.workerlink import WorkerLink, leftover_reason, read_report, reason_of

WorkerMain = Callable[[Config, "Slot", WorkerLink], int]

_HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
            signal.SIGUSR1)
_STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # QUIT: graceful, as nginx's
READY_TIMEOUT_S = 15.0
TERMINATE_SLACK_S = 5.0
"""How much longer than a graceful stop (drain + shutdown) stopping workers get before KILL."""
# A worker that dies sooner than this after starting (or before it serves) is crashing: wait
# before the next try, twice as long each time it happens again in a row, up to the maximum.
CRASH_WINDOW_S = 1.0
CRASH_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# Restart-only in one process, but every reload starts fresh workers, which read them anew
# (metrics.listen: the master binds the new addresses, the new workers serve them).
_PER_WORKER = frozenset({"server.pool_threads", "metrics.listen"})
RELOAD_COUNTERS = ("reloads_total", "reload_failures_total")


Slot = tuple[list[socket.socket], dict[str, socket.socket]]
"""One worker's listening sockets: (socket-activated sockets, {address: bound socket})."""


@dataclasses.dataclass(frozen=True)
class Parked:
    """A slot's sockets the master closed during a back-off: their addresses (getsockname)
    by configured address, and its /metrics socket's."""

    bound: dict[str, tuple[Any, ...]]
    metrics: tuple[Any, ...] | None


class WorkerStartError(Exception):
    """A worker could not start at start-up; str() is its one-line reason."""


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


MetricsSockets = list[socket.socket | None]


def bind_worker_metrics(config: Config, workers: int,
                        held: MetricsSockets | None = None) -> MetricsSockets:
    """Each slot's /metrics socket (`metrics.listen`, port + slot), all or none; raises
    ListenError.

    The master binds them, once, like the listening sockets (again only after a crash
    back-off: Master._park_idle), and every generation of a slot's worker inherits its
    slot's socket: a reload's new worker never races its predecessor for the port
    (binding it itself, it finds it taken until the old worker exits -- the bug this
    replaced), nothing needs retrying, and no SO_REUSEPORT mixes two
    slots' figures behind one port; only during a reload's hand-over, until the new workers
    serve and the old ones are told to stop (they then close their copy at once), do a
    slot's old and new worker both accept on it. A socket in `held` already on a wanted
    address is reused, so a reload moving the ports by one does not collide with itself."""
    if config.metrics.listen is None:
        none: MetricsSockets = [None] * workers
        return none
    host, port = parse_listen(config.metrics.listen)
    by_address = {sock.getsockname()[:2]: sock for sock in held or [] if sock is not None}
    sockets: MetricsSockets = []
    try:
        for slot in range(workers):
            reused = by_address.get((host, port + slot)) if port else None
            sockets.append(reused if reused is not None else bind_metrics(config, slot))
    except BaseException:
        close_metrics(sockets, keep=held or [])
        raise
    return sockets


def close_metrics(sockets: MetricsSockets, keep: MetricsSockets | None = None) -> None:
    """Close the master's copy of `sockets`, except those also in `keep`."""
    kept = {id(sock) for sock in keep or []}
    for sock in sockets:
        if sock is not None and id(sock) not in kept:
            sock.close()


class MasterLog:
    """The master's own error log (`log(event, level="info", **fields)`): the log start-up
    opened, reopened on USR1 like the workers', replaced by a reload that changes [log]."""

    def __init__(self, log: ServerLog) -> None:
        self.current = log

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        log = self.current
        if level == "error":
            log.error(event, None, fields)
        elif level == "warning":
            log.warning(event, **fields)
        else:
            log.info(event, **fields)
        log.flush()  # nothing buffered may be inherited by a worker and written twice

    def reopen(self) -> None:
        """USR1: after logrotate moved the files, write to new files at the same paths."""
        for sink in (self.current.access_sink, self.current.error_sink):
            try:
                sink.reopen()
            except OSError as exc:
                self("logs-reopen-failed", "error", reason=f"{sink.target}: {exc.strerror}")
                return
        self("logs-reopened")

    def stage(self, old: Config, new: Config) -> ServerLog | None:
        """The log `new` names, opened if [log] changed (else None); raises LogOpenError."""
        return open_log(new) if new.log != old.log else None

    def commit(self, staged: ServerLog | None) -> None:
        if staged is not None:
            previous, self.current = self.current, staged
            previous.close()

    def close(self) -> None:
        self.current.close()


class Worker:
    """One forked worker: its pid, slot, start time and report pipe; `reason` is why it
    did not start (None: it started, or is still starting)."""

    __slots__ = ("pid", "reason", "report_fd", "slot", "started")

    def __init__(self, pid: int, slot: int, report_fd: int) -> None:
        self.pid = pid
        self.slot = slot
        self.report_fd = report_fd
        self.started = time.monotonic()
        self.reason: str | None = None


class ReloadRefused(Exception):
    """The reload cannot be applied; str() is the reason (the old configuration stays)."""

    def __init__(self, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.fields = fields


class Master:
    """Supervises `len(slots)` workers running `worker_main(config, sockets, link)`."""

    def __init__(self, config: Config, slots: list[Slot], worker_main: WorkerMain,
                 log: MasterLog, *, metrics: MetricsSockets | None = None,
                 reload_config: Callable[[], Config] | None = None,
                 on_ready: Callable[[], None] | None = None,
                 notifier: Notifier | None = None, daemonized: bool = False,
                 in_child: Callable[[], None] | None = None) -> None:
        self.config = config
        self.slots = slots
        self.metrics: MetricsSockets = (metrics if metrics is not None
                                        else [None] * len(slots))
        self.worker_main = worker_main
        self.log = log
        self.reload_config = reload_config
        self.on_ready = on_ready
        self.notifier = notifier if notifier is not None else Notifier({})
        self.daemonized = daemonized
        self.in_child = in_child
        """Run in each forked worker first (start-up closes what workers must not hold)."""
        self._next_ping = 0.0
        self.workers: dict[int, Worker] = {}
        """Every live child by pid: current workers, and old ones a reload is retiring."""
        self.current: dict[int, Worker] = {}
        """The worker serving each slot (by slot number)."""
        self.stopping = False
        self.counters = dict.fromkeys(RELOAD_COUNTERS, 0)
        self._respawn_at: dict[int, float] = {}
        self._quick_deaths: dict[int, int] = {}
        self._parked: dict[int, Parked] = {}
        """Slots in back-off whose sockets are closed: what to bind again (_park_idle)."""
        self._staged_metrics: MetricsSockets = []
        self._lifeline = (-1, -1)

    # ---- workers --------------------------------------------------------------------------
    def spawn(self, slot: int, config: Config, metrics: socket.socket | None,
              counters: dict[str, int] | None = None) -> Worker:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker; never returns
            os.close(read_fd)
            self._run_child(slot, config, WorkerLink(
                slot, metrics, write_fd, self._lifeline[0],
                dict(counters if counters is not None else self.counters)))
        os.close(write_fd)
        worker = Worker(pid, slot, read_fd)
        self.workers[pid] = worker
        return worker

    def _run_child(self, slot: int, config: Config, link: WorkerLink) -> None:
        code = 1
        try:
            for sig in _HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            hold_signals()  # a HUP or USR1 before its own handlers are in: noted, not fatal
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            os.environ.pop("NOTIFY_SOCKET", None)  # only the master talks to systemd
            self._close_in_child(slot, link.metrics)
            code = self.worker_main(config, self.slots[slot], link)
        except BaseException as exc:  # its reason goes to the master's error log
            link.failed(reason_of(exc))
        finally:
            os._exit(code)

    def _close_in_child(self, slot: int, metrics: socket.socket | None) -> None:
        """What the master holds that this worker must not: other slots' sockets, other
        workers' report pipes, the lifeline's write end (else the worker's own copy would
        keep it open after the master died)."""
        os.close(self._lifeline[1])
        for worker in self.workers.values():
            os.close(worker.report_fd)
        for index, (_shared, bound) in enumerate(self.slots):
            if index != slot:  # other slots' twins; shared activated sockets stay
                for sock in bound.values():
                    sock.close()
        close_metrics([*self.metrics, *self._staged_metrics], keep=[metrics])
        if self.in_child is not None:
            self.in_child()

    def wait_ready(self, worker: Worker, deadline: float | None = None) -> str | None:
        """Block until `worker` reports ready (None) or why it is not (its reason, or that
        it exited or timed out); a worker that did not start is killed."""
        if deadline is None:
            deadline = time.monotonic() + READY_TIMEOUT_S
        # the watchdog is pinged meanwhile: systemd keeps it armed through a reload, and a
        # worker may take READY_TIMEOUT_S to start (a slow app import)
        reason = read_report(worker.report_fd, deadline, self._ping_watchdog)
        if reason is not None:
            worker.reason = reason
            _kill(worker.pid, signal.SIGKILL)  # hung, or exiting anyway
        return reason

    # ---- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        """Start the workers (WorkerStartError if one cannot), then supervise until stopped."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        for sig in take_held():  # noted before they were blocked: sigtimedwait takes them
            signal.raise_signal(sig)
        self._lifeline = os.pipe()
        try:
            self._start()
            self.log("workers-started", workers=len(self.workers),
                     pids=sorted(self.workers))
            if self.on_ready is not None:
                self.on_ready()
            self.notifier.ready(f"{len(self.workers)} workers")
            while self.workers or not self.stopping:
                info = signal.sigtimedwait(_HANDLED, self._wait_s())
                if info is not None:
                    self._dispatch(info.si_signo)
                self._reap()
                self._respawn_due()
                self._park_idle()
                self._ping_watchdog()
        finally:
            while signal.sigtimedwait(_HANDLED, 0) is not None:
                pass  # came as the last worker exited: stopping anyway (unblocked, TERM kills)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            close_slots(self.slots)
            close_metrics(self.metrics)
            for fd in self._lifeline:
                os.close(fd)
        return 0

    def _start(self) -> None:
        for slot in range(len(self.slots)):
            self.current[slot] = self.spawn(slot, self.config, self.metrics[slot])
        deadline = time.monotonic() + READY_TIMEOUT_S
        for worker in list(self.current.values()):
            reason = self.wait_ready(worker, deadline)
            if reason is not None:  # as in one process: the reason, exit 1
                self.stopping = True
                self._terminate(list(self.workers.values()))
                raise WorkerStartError(reason)

    def _wait_s(self) -> float:
        """How long to wait for a signal: at most 1 s (watchdog), less if a respawn is due."""
        if not self._respawn_at:
            return 1.0
        return max(0.0, min(1.0, min(self._respawn_at.values()) - time.monotonic()))

    def _ping_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        now = time.monotonic()
        if interval is not None and now >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = now + min(interval, 1.0)

    def _dispatch(self, signo: int) -> None:
        if signo in _STOP:
            self.stop()
        elif signo == signal.SIGUSR1:
            self.log.reopen()
            self._forward(signal.SIGUSR1)
        elif signo == signal.SIGHUP:
            self.reload()

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._respawn_at.clear()
        timeouts = self.config.timeouts
        # _terminate's wait for the workers (then KILL and reap), and the master's own exit
        self.notifier.stopping(within_s=timeouts.drain_s + timeouts.shutdown_s
                               + TERMINATE_SLACK_S + STOP_SLACK_S)
        self.log("master-stopping", workers=len(self.workers))
        # The workers hold their own copies of the listening and /metrics sockets while they
        # drain. With ours closed, a connection that comes once they stopped accepting is
        # refused at once, as in one process, instead of waiting in an accept queue nobody
        # reads until the master exits (then reset).
        close_slots(self.slots)
        close_metrics(self.metrics)
        self._terminate(list(self.workers.values()))

    def _terminate(self, workers: list[Worker]) -> None:
        """TERM `workers`, wait for them to stop (as long as a graceful stop may take),
        then KILL what is left."""
        for worker in workers:
            _kill(worker.pid, signal.SIGTERM)
        deadline = (time.monotonic() + self.config.timeouts.drain_s
                    + self.config.timeouts.shutdown_s + TERMINATE_SLACK_S)
        while any(w.pid in self.workers for w in workers) and time.monotonic() < deadline:
            self._reap()
            # Signals stay blocked here: a stop request again (a second TERM) is passed on,
            # so the workers skip the rest of their drain, as one process does; left
            # pending, it would kill the master at exit instead.
            info = signal.sigtimedwait(_HANDLED, 0.02)
            if info is not None and info.si_signo in _STOP:
                for worker in workers:
                    if worker.pid in self.workers:
                        _kill(worker.pid, signal.SIGTERM)
        for worker in workers:
            if worker.pid in self.workers:
                _kill(worker.pid, signal.SIGKILL)
        while any(w.pid in self.workers for w in workers):
            self._reap(block=True)

    # ---- reload ---------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the config; start new workers with it; once all serve, retire the old."""
        if self.reload_config is None or self.stopping:
            return
        self.notifier.reloading()
        try:
            self._reload()
        except ReloadRefused as exc:
            self.counters["reload_failures_total"] += 1
            self.log("reload-failed", level="error", reason=str(exc), **exc.fields)
        finally:  # systemd must not be left in "reloading", whatever happened
            self._park_idle()  # slots still in back-off after a failed reload
            self.notifier.ready(f"{len(self.slots)} workers")

    def _reload(self) -> None:
        loaded = self._load()
        # As in one process (ops/server.py): restart-only settings keep their running values
        # (new workers would otherwise import a changed [app] the warning says waits), and
        # the warning repeats for as long as the file differs from what runs.
        later = [name for name in pending_restart(self.config, loaded)
                 if name not in _PER_WORKER]
        config = keep_running(self.config, loaded, applied=_PER_WORKER)
        try:
            staged_log = self.log.stage(self.config, config)
        except LogOpenError as exc:
            raise ReloadRefused(str(exc)) from None
        try:
            for slot in sorted(self._parked):  # every slot gets a new worker now
                try:
                    self._unpark(slot)
                except ListenError as exc:
                    raise ReloadRefused(str(exc), slot=slot) from None
            self._staged_metrics = self._stage_metrics(config)
            new = self._start_generation(config)
        except BaseException:
            if staged_log is not None:
                staged_log.close()
            close_metrics(self._staged_metrics, keep=self.metrics)
            raise
        finally:
            staged, self._staged_metrics = self._staged_metrics, []
        changed = changed_settings(self.config, config)
        self.config = config
        # The slots' sockets stay (listen addresses change only on restart), but their
        # accept queues take server.backlog, as one process's do (Linux resizes a live one;
        # socket-activated ones are the service manager's)
        for _activated, bound in self.slots:
            for sock in bound.values():
                with contextlib.suppress(OSError):
                    sock.listen(config.server.backlog)
        for slot, worker in new.items():  # the new ones serve: retire their predecessors
            previous = self.current.get(slot)
            self.current[slot] = worker
            if previous is not None:
                _kill(previous.pid, signal.SIGTERM)
        self._respawn_at.clear()
        self._quick_deaths.clear()
        close_metrics(self.metrics, keep=staged)
        self.metrics = staged
        self.log.commit(staged_log)
        self.counters["reloads_total"] += 1
        certificates = len(pairs(config.tls))
        if certificates:  # each new worker read them afresh (a renewal): one says so too
            self.log("tls-reloaded", trigger="reload", certificates=certificates,
                     workers=len(new))
        # as one process says it: what the new workers run differently
        self.log("reloaded", changed=changed, workers=len(new),
                 pids=sorted(w.pid for w in new.values()))
        if later:
            self.log("reload-needs-restart", level="warning", settings=later,
                     message="these settings take effect at the next start")
        upgraded = upgraded_version()
        if upgraded is not None:
            self.log("upgrade-needs-restart", level="warning", running=__version__,
                     installed=upgraded, message=UPGRADE_MESSAGE)

    def _load(self) -> Config:
        """The re-read configuration, with the running listeners (bound once, by us)."""
        assert self.reload_config is not None
        try:
            config = self.reload_config()
        except Exception as exc:  # a ConfigError is one line already
            raise ReloadRefused(str(exc)) from None
        if self.daemonized:
            streams = [t for t in (config.log.access, config.log.error) if is_stream_target(t)]
            if streams:
                raise ReloadRefused(f"log target {streams[0]!r} is not possible in daemon"
                                    " mode; set log.access and log.error to files")
        running = self.config
        # [proxy] protocol is not among them: each new worker applies it to every listener
        if (listener_options(config.server) != listener_options(running.server)
                or config.tls.listen != running.tls.listen):
            self.log("reload-listen-unchanged", level="warning",
                     reason="listen addresses change only on restart with workers > 1")
            config = _with_listen(config, running)
        return config

    def _stage_metrics(self, config: Config) -> MetricsSockets:
        if config.metrics.listen == self.config.metrics.listen:
            return list(self.metrics)
        try:
            return bind_worker_metrics(config, len(self.slots), held=self.metrics)
        except ListenError as exc:
            raise ReloadRefused(str(exc)) from None

    def _start_generation(self, config: Config) -> dict[int, Worker]:
        """A new worker per slot running `config`, all serving; or ReloadRefused, having
        stopped those that started (the old workers serve on, untouched)."""
        counters = {**self.counters, "reloads_total": self.counters["reloads_total"] + 1}
        new = {slot: self.spawn(slot, config, self._staged_metrics[slot], counters)
               for slot in range(len(self.slots))}
        deadline = time.monotonic() + READY_TIMEOUT_S
        for slot, worker in new.items():
            reason = self.wait_ready(worker, deadline)
            if reason is not None:
                for started in new.values():  # not current: reaped without a word
                    _kill(started.pid, signal.SIGTERM)
                raise ReloadRefused(f"a new worker could not start: {reason}", slot=slot)
        return new

    # ---- dead workers ---------------------------------------------------------------------
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
            reason = worker.reason or leftover_reason(worker.report_fd)
            os.close(worker.report_fd)
            self._worker_exited(worker, status, reason)
            if block:
                return

    def _worker_exited(self, worker: Worker, status: int, reason: str | None) -> None:
        if self.stopping or self.current.get(worker.slot) is not worker:
            return  # stopping, or retired by a reload, or a reload's new one that failed
        code = os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        crashing = worker.reason is not None or now - worker.started < CRASH_WINDOW_S
        delay = self._back_off(worker.slot, crashing)
        fields: dict[str, object] = {"pid": worker.pid, "slot": worker.slot, "exit_code": code}
        if code < 0:  # killed by a signal: a crash, an OOM kill, an operator's kill -9
            fields["signal"] = signal.Signals(-code).name
        if reason is not None:
            fields["reason"] = reason
        self.log("worker-died", level="error" if code != 0 else "warning",
                 respawn_in_s=delay, **fields)
        self._respawn_at[worker.slot] = now + delay

    def _back_off(self, slot: int, crashing: bool) -> float:
        """Seconds to wait before `slot`'s next worker: 0, or doubling while it crashes."""
        deaths = self._quick_deaths.get(slot, 0) + 1 if crashing else 0
        self._quick_deaths[slot] = deaths
        return min(CRASH_BACKOFF_S * 2 ** (deaths - 1), MAX_BACKOFF_S) if deaths else 0.0

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for slot, when in sorted(self._respawn_at.items()):
            if when <= now and not self.stopping:
                del self._respawn_at[slot]
                if slot in self._parked:
                    try:
                        self._unpark(slot)
                    except ListenError as exc:  # taken meanwhile: the next back-off tries
                        delay = self._back_off(slot, crashing=True)
                        self.log("worker-respawn-failed", level="error", slot=slot,
                                 reason=str(exc), respawn_in_s=delay)
                        self._respawn_at[slot] = now + delay
                        continue
                worker = self.current[slot] = self.spawn(slot, self.config, self.metrics[slot])
                self.wait_ready(worker)  # if it fails, its death is logged when reaped

    # ---- slots without a worker -----------------------------------------------------------
    def _park_idle(self) -> None:
        """Close the master's listening and /metrics sockets of every slot waiting for a
        respawn, while another slot's worker serves.

        Nobody accepts on a slot without a worker, yet SO_REUSEPORT goes on handing its
        sockets a share of the new connections, which would wait there unanswered for up to
        MAX_BACKOFF_S; closed, the kernel sends them to the serving workers (connections
        queued at that moment are reset). With no worker serving at all they stay open,
        so clients wait for the respawn instead of being refused (as for one worker)."""
        if self.stopping or not any(self._serving(slot) for slot in range(len(self.slots))):
            return
        for slot in sorted(self._respawn_at):
            if slot in self._parked:
                continue
            activated, bound = self.slots[slot]
            metrics = self.metrics[slot]
            self._parked[slot] = Parked(
                {address: sock.getsockname() for address, sock in bound.items()},
                metrics.getsockname() if metrics is not None else None)
            self.slots[slot] = (activated, {})
            self.metrics[slot] = None
            close_sockets(bound.values())  # the shared activated ones stay
            close_metrics([metrics])

    def _serving(self, slot: int) -> bool:
        worker = self.current.get(slot)
        return (slot not in self._respawn_at and worker is not None
                and worker.reason is None and worker.pid in self.workers)

    def _unpark(self, slot: int) -> None:
        """Bind a parked slot's sockets again, on the same addresses (SO_REUSEPORT for
        the listening ones, beside the other slots'); all or none, else ListenError."""
        parked = self._parked[slot]
        bound: dict[str, socket.socket] = {}
        try:
            for address, (host, port, *_rest) in parked.bound.items():
                try:
                    bound[address] = bind_tcp(host, port, reuse_port=True,
                                              backlog=self.config.server.backlog)
                except OSError as exc:
                    raise ListenError(format_listen(host, port),
                                      exc.strerror or str(exc)) from None
            metrics = (None if parked.metrics is None
                       else bind_metrics_at(parked.metrics[0], parked.metrics[1]))
        except ListenError:
            close_sockets(bound.values())
            raise
        del self._parked[slot]
        self.slots[slot] = (self.slots[slot][0], bound)
        self.metrics[slot] = metrics


def _kill(pid: int, signo: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)


def _with_listen(config: Config, running: Config) -> Config:
    """`config` keeping the running listeners, HTTPS ones too (they are bound once, by the
    master: a worker binding an added one itself took its port from its sibling)."""
    server = dataclasses.replace(config.server, listen=running.server.listen,
                                 listeners=running.server.listeners)
    tls = dataclasses.replace(config.tls, listen=running.tls.listen)
    return dataclasses.replace(config, server=server, tls=tls)
