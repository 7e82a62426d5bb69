"""Start-up of `reactor serve`: configuration, sockets, logs, detaching, privileges, then run.

Strategy: the steps run in the order that lets every failure reach the operator as one line
on the terminal before anything is detached or switched. Exit code 2 means the configuration
cannot work -- what `reactor check-config` refuses too: a bad value, a log file or pid file
that cannot be created; 1 means the host refused at run time (address in use, a live pid
file, a user switch). Load the configuration; in daemon mode refuse terminal log targets;
check the pid file (written with or without --daemon); take socket-activated sockets or bind;
open the logs; write the pid file or detach (--daemon); switch user; assemble the Server and
run it. Whatever is open when a step fails is closed again. After
detaching, a failure travels to the waiting terminal over the daemon's start-up pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from typing import Any

from reactor.ops import apploader
from reactor.ops.config import ConfigError, ConfigSource, probe_pidfile
from reactor.ops.daemon import (
    DaemonError,
    Detached,
    PidFile,
    detach,
    drop_privileges,
    is_stream_target,
)
from reactor.ops.listeners import ListenError, bind_addresses, close_sockets
from reactor.ops.logging import ServerLog
from reactor.ops.master import (
    Master,
    MasterLog,
    MetricsSockets,
    Slot,
    WorkerStartError,
    bind_worker_metrics,
    close_slots,
    make_slots,
)
from reactor.ops.server import (
    LogOpenError,
    Server,
    hold_signals,
    open_log,
    tls_bound_key,
)
from reactor.ops.settings import Config, listener_options
from reactor.ops.systemd import Notifier, listen_fds
from reactor.ops.tls import TlsError, build_tls
from reactor.ops.workerlink import WorkerLink

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + 2  # as a shell reports SIGINT


Note = tuple[str, str, dict[str, Any]]
"""(level, event, fields): something start-up found, for the error log."""


class StartupError(Exception):
    """`reactor serve` cannot start; str() is the one-line reason."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def serve(args: argparse.Namespace) -> int:
    """`reactor serve [--daemon]`: serve until stopped; returns the exit code."""
    daemon_mode = bool(getattr(args, "daemon", False))
    detached: Detached | None = None
    foreground_pidfile: PidFile | None = None
    notes: list[Note] = []  # logged once the server listens, after the "listening" lines
    hold_signals()  # before the pid file exists: a HUP or USR1 from now on never kills
    try:
        source = ConfigSource.capture(args)
        config = _load(source)
        _import_app(config, source.cwd)
        _check_tls(config)
        if daemon_mode:
            _daemon_preflight(config)
        pidfile = _pidfile_preflight(config, notes)
        workers = config.server.workers
        with contextlib.ExitStack() as opened:  # closed again if a step below fails
            activated, bound = _listen(config, opened, notes, reuse_port=workers > 1)
            log = _open_log(config, opened)
            if pidfile is not None and not daemon_mode:  # the foreground writes it too
                _acquire(pidfile)
                foreground_pidfile = pidfile
            if daemon_mode:
                keep = [*activated, *bound.values(), log.access_sink.fileno,
                        log.error_sink.fileno]
                detached = detach(preserve=[fd for fd in keep if fd != -1],
                                  pidfile=pidfile, umask=config.daemon.umask)
            _switch_user(config, log, notes)
            if workers > 1:
                slots, metrics = _worker_slots(config, activated, bound)
                opened.pop_all()  # the master owns them now
                return _run_master(config, source, slots, metrics, log, notes, detached)
            try:
                server = Server(config, listen_sockets=activated or None, bound=bound, log=log,
                                source=source, daemonized=daemon_mode)
            except ListenError as exc:  # metrics.listen
                raise StartupError(str(exc)) from None
            opened.pop_all()  # the server owns them now
        return server.run(on_ready=lambda: _ready(server.log, notes, detached))
    except StartupError as exc:
        if detached is not None:
            detached.failed(str(exc))
        else:
            print(f"reactor: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C before the loop's handler took over
        return EXIT_INTERRUPTED
    finally:
        if detached is not None:
            detached.close()  # removes the pid file
        if foreground_pidfile is not None:
            foreground_pidfile.release()


def _ready(log: ServerLog, notes: list[Note], detached: Detached | None) -> None:
    for level, event, fields in notes:
        getattr(log, level)(event, **fields)
    log.flush()
    if detached is not None:
        detached.ready()


def _load(source: ConfigSource) -> Config:
    try:
        return source.load()
    except ConfigError as exc:
        raise StartupError(str(exc), EXIT_USAGE) from None


def _import_app(config: Config, cwd: str) -> None:
    """Import the [app] (once, before binding and forking): a failure is one line, exit 2."""
    try:
        apploader.load(config, cwd=cwd)
    except apploader.AppLoadError as exc:
        raise StartupError(str(exc), EXIT_USAGE) from None


def _check_tls(config: Config) -> None:
    """Every certificate/key pair loads (before anything is bound or detached)."""
    try:
        build_tls(config)
    except TlsError as exc:
        raise StartupError(str(exc), EXIT_USAGE) from None


def _daemon_preflight(config: Config) -> None:
    """--daemon: refuse log targets that would vanish into /dev/null."""
    for key in ("access", "error"):
        target = getattr(config.log, key)
        if is_stream_target(target):
            shown = "stdout" if target == "-" else target
            raise StartupError(
                f"--daemon: log.{key} goes to {shown}, which a daemon does not have;"
                " set log.access and log.error to files (or \"off\")", EXIT_USAGE)


def _pidfile_preflight(config: Config, notes: list[Note]) -> PidFile | None:
    """daemon.pidfile (with or without --daemon): refuse a directory that cannot hold it
    (exit 2) and a live pid file (exit 1); remove a stale one. Returns the pid file to write,
    if one is configured."""
    if config.daemon.pidfile is None:
        return None
    problem = probe_pidfile(config.daemon.pidfile)
    if problem is not None:
        raise StartupError(problem, EXIT_USAGE)
    pidfile = PidFile(config.daemon.pidfile)
    try:
        stale = pidfile.clear_stale()
    except DaemonError as exc:
        raise StartupError(str(exc)) from None
    if stale is not None:
        notes.append(("warning", "pidfile-stale-removed",
                      {"path": str(pidfile.path), "pid": stale}))
    return pidfile


def _acquire(pidfile: PidFile) -> None:
    try:
        pidfile.acquire()
    except DaemonError as exc:
        raise StartupError(str(exc), EXIT_USAGE) from None


def _worker_slots(config: Config, activated: list[socket.socket],
                  bound: dict[str, socket.socket]) -> tuple[list[Slot], MetricsSockets]:
    """The listening sockets of every worker slot, and each slot's /metrics socket."""
    try:
        slots = make_slots(activated, bound, config.server.workers, config.server.backlog)
    except OSError as exc:
        raise StartupError(f"cannot listen for worker processes: {exc.strerror or exc}"
                           ) from None
    try:
        return slots, bind_worker_metrics(config, config.server.workers)
    except ListenError as exc:  # metrics.listen (+ a worker's number)
        close_slots(slots[1:])  # the first slot's sockets are closed by the caller
        raise StartupError(str(exc)) from None


def _run_master(config: Config, source: ConfigSource, slots: list[Slot],
                metrics: MetricsSockets, log: ServerLog, notes: list[Note],
                detached: Detached | None) -> int:
    """server.workers > 1: this process supervises forked single-threaded workers."""
    def worker_main(config: Config, slot: Slot, link: WorkerLink) -> int:
        activated, bound = slot
        server = Server(config, listen_sockets=activated or None, bound=bound or None,
                        log=open_log(config), notifier=Notifier({}), worker=link.worker,
                        metrics=link.metrics)
        server.http.counters.update(link.counters)  # the master counts the reloads
        server.metrics_while_stopping = False  # its successor answers the slot's port

        def master_gone() -> None:  # SIGKILLed, OOM-killed: do not serve on, orphaned
            server.log.warning("master-gone", message="the master process exited; stopping")
            server.stop()

        link.watch_master(server.loop, master_gone)
        return server.run(on_ready=link.ready)

    master_log = MasterLog(log)
    log.flush()  # nothing buffered may be inherited and written twice by a worker
    master = Master(config, slots, worker_main, master_log, metrics=metrics,
                    reload_config=source.load, notifier=Notifier(),
                    on_ready=lambda: _ready(master_log.current, notes, detached),
                    daemonized=detached is not None,
                    in_child=detached.forget if detached is not None else None)
    try:
        return master.run()
    except WorkerStartError as exc:  # as in one process: the reason, exit 1
        raise StartupError(str(exc)) from None
    finally:
        master_log.close()


def _listen(config: Config, opened: contextlib.ExitStack, notes: list[Note], *,
            reuse_port: bool = False) -> tuple[list[socket.socket], dict[str, socket.socket]]:
    """Socket-activated sockets if systemd passed any, else `server.listen` bound."""
    try:
        activated = [sock for _name, sock in listen_fds()]
    except ValueError as exc:
        raise StartupError(f"socket activation: {exc}") from None
    opened.callback(close_sockets, activated)
    if activated:
        notes.append(("info", "socket-activation", {
            "sockets": len(activated),
            "message": "serving the sockets passed by the service manager; server.listen"
                       " is not bound"}))
        return activated, {}
    try:
        bound = bind_addresses([o.address for o in listener_options(config.server)],
                               config.server.backlog, reuse_port=reuse_port)
        try:
            tls = bind_addresses(config.tls.listen, config.server.backlog,
                                 reuse_port=reuse_port)
        except ListenError:
            close_sockets(bound.values())
            raise
        bound.update({tls_bound_key(address): sock for address, sock in tls.items()})
    except ListenError as exc:
        raise StartupError(str(exc)) from None
    opened.callback(close_sockets, list(bound.values()))
    return [], bound


def _open_log(config: Config, opened: contextlib.ExitStack) -> ServerLog:
    try:
        log = open_log(config)
    except LogOpenError as exc:
        raise StartupError(str(exc), EXIT_USAGE) from None
    opened.callback(log.close)
    return log


def _switch_user(config: Config, log: ServerLog, notes: list[Note]) -> None:
    files = [(sink.target, sink.owned_file) for sink in (log.access_sink, log.error_sink)
             if sink.owned_file != -1]
    try:
        switched = drop_privileges(config.daemon.user, config.daemon.group, files)
    except DaemonError as exc:
        raise StartupError(str(exc)) from None
    if switched is not None:
        notes.append(("info", "privileges-dropped", {"uid_gid": switched}))
    elif os.geteuid() == 0:
        notes.append(("warning", "running-as-root", {
            "message": "set daemon.user to switch to an unprivileged user after binding"}))
