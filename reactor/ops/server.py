"""Server assembly: config in, loop + app + listeners + logs + signals out, run to a clean stop.

Strategy
--------
Signals only record and wake the loop (`EventLoop.add_signal_handler`); the work happens in
loop callbacks here: TERM/INT/QUIT stop gracefully (QUIT as nginx's), HUP reloads the
configuration, USR1 reopens the log files.

A reload is staged, then committed. Staging does everything that can fail -- read and
validate the configuration, open changed log files, bind added addresses, build the app --
and on any failure undoes itself and leaves the running configuration whole ("reload-failed"
in the error log, with the one-line reason). Committing only swaps objects: the HttpServer's
settings, app and log, the listener set. What a changed setting needs comes from its declared
reload class (reactor.ops.settings.Reload): the app is rebuilt when a Reload.APP setting
changed, and Reload.RESTART settings keep their running values -- those the file changes are
named in a `reload-needs-restart` warning on every reload until a restart applies them.
Connections in progress keep what they hold; new connections and new requests see the new
objects.

Under systemd (NOTIFY_SOCKET) the loop itself sends WATCHDOG=1 from a timer, so a wedged loop
stops the pings, and refreshes STATUS= with live figures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reactor import __version__
from reactor.app.health import DRAINING, SERVING, Readiness
from reactor.app.proxy import TrustedNetworks
from reactor.app.static.filecache import sweep_all
from reactor.app.types import Application
from reactor.conn.listener import Listener, ListenerOptions
from reactor.conn.server import HttpServer
from reactor.conn.tls import TlsContexts
from reactor.loop import EventLoop, TimerHandle
from reactor.ops import apploader
from reactor.ops.assembly import (
    UPGRADE_MESSAGE,
    bind_metrics,
    changed_settings,
    http_settings,
    make_app,
    upgraded_version,
    upload_directories,
    websocket_settings,
    wrap_app,
)
from reactor.ops.config import ConfigError, ConfigSource
from reactor.ops.daemon import is_stream_target
from reactor.ops.kinds import format_listen
from reactor.ops.listeners import ListenError, Listeners, Rebind, bind_addresses, close_sockets
from reactor.ops.logging import ServerLog, open_error
from reactor.ops.metrics import (
    LISTENER_LIMIT_HINT,
    LISTENER_MAX_CONNECTIONS,
    Metrics,
    MetricsApp,
    QuietLog,
)
from reactor.ops.metrics import listener_settings as metrics_listener_settings
from reactor.ops.settings import (
    Config,
    Reload,
    keep_running,
    listener_options,
    pending_restart,
    reload_class,
)
from reactor.ops.systemd import STOP_SLACK_S, Notifier
from reactor.ops.tls import (
    WATCH_INTERVAL_S,
    HttpsPolicy,
    TlsError,
    build_tls,
    file_stamps,
    https_port,
    pairs,
    watched_files,
)

# Longest a buffered log line waits before it is written (a crash loses at most this much).
LOG_FLUSH_DELAY_S = 0.05
SERVER_NAME = f"reactor/{__version__}".encode()


def server_name(config: Config) -> bytes:
    """The `Server` field: with the version unless `server.tokens = false` (nginx's
    server_tokens: a scanner then learns the product, not which release to attack)."""
    return SERVER_NAME if config.server.tokens else b"reactor"
STATUS_INTERVAL_S = 2.0
"""How often STATUS= (connections, requests served) is refreshed under systemd."""
POOL_GRACE_S = 0.5
"""After a stop's deadline, how long pool threads still get to finish (clean-ups)."""
FILE_CACHE_SWEEP_S = 1.0
"""How often the static open-file caches close entries past their 1 s validity."""
HELD_SIGNALS = (signal.SIGHUP, signal.SIGUSR1)
_held: list[int] = []  # held signals noted before the loop's handlers were in


def hold_signals() -> None:
    """First thing in `reactor serve` (before the pid file is written) and in each worker:
    a HUP or USR1 that comes before the loop's handlers are in is noted and handled once the
    server serves (`Server.run`); one that comes while it closes is dropped. Their default
    action would kill the process: logrotate, or a script signalling the pid file's pid."""
    _held.clear()
    for sig in HELD_SIGNALS:
        signal.signal(sig, _note_held)


def take_held() -> list[int]:
    """The held signals noted so far (each once), oldest first."""
    taken = list(dict.fromkeys(_held))
    _held.clear()
    return taken


def _note_held(signum: int, _frame: object) -> None:
    _held.append(signum)



TLS_KEY = "tls "
"""Prefix of an HTTPS address among the bound sockets (it may equal a plain one: port 0)."""


def tls_bound_key(address: str) -> str:
    return TLS_KEY + address


class LogOpenError(Exception):
    """A log file could not be opened; str() is one line naming it."""


def open_log(config: Config) -> ServerLog:
    """The access and error logs `config` names, opened. Raises LogOpenError."""
    log = config.log
    try:
        return ServerLog(access=log.access, error=log.error, level=log.level, fmt=log.format)
    except OSError as exc:
        raise LogOpenError(open_error(exc)) from None


class Periodic:
    """Call `fn()` every `interval_s` on the loop until cancelled."""

    def __init__(self, loop: EventLoop, interval_s: float, fn: Callable[[], None]) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._fn = fn
        self._handle: TimerHandle | None = loop.call_later(interval_s, self._fire)

    def _fire(self) -> None:
        self._handle = self._loop.call_later(self._interval_s, self._fire)
        self._fn()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class ReloadError(Exception):
    """A new configuration cannot be applied; str() is the one-line reason."""


@dataclass
class _Staged:
    """What a reload prepared before committing: new log, new sockets, new app."""

    config: Config
    log: ServerLog | None
    rebind: Rebind
    app: Application | None
    tls_rebind: Rebind
    tls_context: Any  # ssl.SSLContext | None: built afresh on every reload (files may change)
    later: list[str]  # restart-only settings the file changes, kept at their running values


class Server:
    """One reactor process: owns the loop, the listeners and the logs.

    `bound` are sockets already bound for `config.server.listen` (by address; those of
    `config.tls.listen` under `TLS_KEY` + address, as `tls_bound_key` makes), `listen_sockets`
    sockets passed by socket activation (never re-bound); with neither, the server binds.
    `log` is an already open ServerLog; `source` is where SIGHUP re-reads the configuration.
    `metrics` is the /metrics socket already bound (None: none), or "bind": `metrics.listen`.
    The server owns (and closes) everything passed to it once the constructor returns.
    """

    def __init__(self, config: Config, *, listen_sockets: Sequence[socket.socket] | None = None,
                 bound: dict[str, socket.socket] | None = None, log: ServerLog | None = None,
                 source: ConfigSource | None = None, notifier: Notifier | None = None,
                 daemonized: bool = False, worker: int = 0,
                 metrics: socket.socket | Literal["bind"] | None = "bind") -> None:
        self.config = config
        self.source = source
        self.daemonized = daemonized
        self.worker = worker
        with contextlib.ExitStack() as owned:  # undone if construction fails half-way
            if log is None:
                log = open_log(config)
                owned.callback(log.close)
            if listen_sockets is None and bound is None:
                addresses = [o.address for o in listener_options(config.server)]
                bound = bind_addresses(addresses, config.server.backlog)
                owned.callback(close_sockets, list(bound.values()))
            # a worker's comes from its master (bound once per slot, see ops/master.py)
            metrics_sock = bind_metrics(config, worker) if metrics == "bind" else metrics
            if metrics_sock is not None:
                owned.callback(metrics_sock.close)
            bound = dict(bound or {})
            missing_tls = [a for a in config.tls.listen if tls_bound_key(a) not in bound]
            if missing_tls:  # socket activation passes plain sockets only
                more = bind_addresses(missing_tls, config.server.backlog)
                owned.callback(close_sockets, list(more.values()))
                bound.update({tls_bound_key(a): sock for a, sock in more.items()})
            self.loop = EventLoop(pool_threads=config.server.pool_threads)
            self.loop.set_busy_poll(config.server.busy_poll_us / 1e6)
            owned.callback(self.loop.close)
            self._assemble(log, bound or {}, listen_sockets or (), notifier or Notifier())
            self._assemble_lb(metrics_sock)
            owned.pop_all()

    def _assemble(self, log: ServerLog, bound: dict[str, socket.socket],
                  activated: Sequence[socket.socket], notifier: Notifier) -> None:
        config = self.config
        self.log = log
        self.loop.set_exception_handler(self._loop_error)
        self.loop.set_report_handler(lambda event, fields: self.log.warning(event, **fields))
        self.loop.add_before_select(self._flush_logs)
        self.app = make_app(config, self.app_error)
        self.http = HttpServer(self.loop, self.app, log, settings=http_settings(config),
                               server_name=server_name(config),
                               max_connections=config.server.max_connections)
        self.http.websocket = websocket_settings(config)
        plain = {a: sock for a, sock in bound.items() if not a.startswith(TLS_KEY)}
        self.listeners = Listeners(
            self.loop, self.http.acceptor, bound=plain, activated=activated,
            options=listener_options(config.server, config.proxy.protocol))
        # HTTPS: every TLS listener shares one TlsContexts, whose context a reload replaces
        self.tls = TlsContexts(build_tls(config),
                               handshake_timeout_s=config.timeouts.tls_handshake_s)
        self.tls_listeners = Listeners(
            self.loop, self.http.acceptor, options=self._tls_options(config),
            bound={a.removeprefix(TLS_KEY): sock for a, sock in bound.items()
                   if a.startswith(TLS_KEY)})
        self._tls_stamps = file_stamps(watched_files(config.tls))
        self.notifier = notifier
        self._timers: list[Periodic] = []
        self._previous_handlers: dict[int, Any] = {}
        self._status = ""
        self._flush_timer: Any = None
        self._stop_deadline: float | None = None
        self.exit_code = 0

    def _assemble_lb(self, metrics_sock: socket.socket | None) -> None:
        """Readiness, metrics and the load-balancer settings (PROXY protocol, trusted proxies,
        health paths) on top of the assembled server."""
        self.readiness = Readiness()
        self.metrics = Metrics(self.worker)
        self.metrics.attach(self.http, self.loop, lambda: self.readiness.ready)
        self.metrics_listener: Listener | None = None
        self.metrics_http: HttpServer | None = None
        # One process answers /metrics until it exits (draining shows reactor_ready 0). A
        # worker shares its slot's socket with the worker a reload starts in its place, so
        # it stops answering it once told to stop: every scrape then reaches the new one.
        self.metrics_while_stopping = True
        if metrics_sock is not None:
            self.metrics_http = HttpServer(
                self.loop, MetricsApp(self.metrics), QuietLog(self._metrics_error),
                settings=metrics_listener_settings(), server_name=server_name(self.config),
                max_connections=LISTENER_MAX_CONNECTIONS, reuse_waiting=True,
                limit_hint=LISTENER_LIMIT_HINT)
            self.metrics_listener = Listener(self.loop, metrics_sock, self.metrics_http.accept)
        self._apply_lb(self.config)

    def _apply_lb(self, config: Config) -> None:
        """(Re)apply [proxy] and [health] to the HttpServer, the app and the log."""
        http = self.http
        http.trusted_proxies = TrustedNetworks(config.proxy.trusted)
        http.proxy_header_s = config.timeouts.proxy_header_s
        http.app = wrap_app(self._serving(self.app, config), config, self.readiness)
        # Counting costs every request; with no /metrics listener (a restart-only
        # setting) nobody could ever read the counts.
        counted = self.metrics_listener is not None
        self.log.observer = self.metrics.observe if counted else None
        self.log.rejected_observer = self.metrics.observe_rejected if counted else None
        self.log.log_health = config.health.log

    def _metrics_error(self, event: str, exc: BaseException | None,
                       fields: dict[str, Any]) -> None:
        self.log.error(event, exc, fields)

    def _close_metrics(self) -> None:
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        if self.metrics_http is not None:
            for transport in list(self.metrics_http.connections):
                transport.abort()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every plain-HTTP TCP listener."""
        names = [listener.address for listener in self.listeners.all()]
        return [name[:2] for name in names if isinstance(name, tuple)]

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every HTTPS listener."""
        return [listener.address[:2] for listener in self.tls_listeners.all()]

    def _tls_options(self, config: Config) -> list[ListenerOptions]:
        """The TLS listeners of [tls] listen, all on the shared, reloadable contexts;
        [proxy] protocol puts the PROXY header in front of their handshakes too."""
        return [ListenerOptions(address, proxy_protocol=config.proxy.protocol, tls=self.tls)
                for address in config.tls.listen]

    def _serving(self, app: Application, config: Config) -> Application:
        """The app as served: with HSTS / the https redirect when [tls] asks for them."""
        tls = config.tls
        redirect_port = None
        if tls.redirect_http:  # the port bound, which differs from the configured one if 0
            bound = self.tls_addresses
            redirect_port = bound[0][1] if bound else https_port(config)
        if not tls.hsts_max_age and redirect_port is None:
            return app
        return HttpsPolicy(app, hsts_max_age=tls.hsts_max_age, redirect_port=redirect_port)

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def app_error(self, event: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        """The app's failures (`App.on_error`), from any thread: logged from the loop."""
        self.loop.call_soon_threadsafe(self.log.error, event, exc, fields)

    def _loop_error(self, context: str, exc: BaseException) -> None:
        self.log.error("loop-error", exc, {"context": context})

    def _flush_logs(self) -> None:
        """Before each wait: write buffered log lines within LOG_FLUSH_DELAY_S.

        Not at once: one connection doing back-to-back requests leaves the loop idle between
        them, and a write per request is the syscall batching exists to avoid. A full
        buffer (512 lines) and an error line are written immediately anyway.
        """
        if self._flush_timer is None and self.log.pending:
            self._flush_timer = self.loop.call_later(LOG_FLUSH_DELAY_S, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_timer = None
        self.log.flush()

    # ---- lifecycle ------------------------------------------------------------------------
    def run(self, *, install_signals: bool = True,
            on_ready: Callable[[], None] | None = None) -> int:
        """Serve until stopped; every exit path closes the listeners, logs, pool and signal
        handlers. Without `install_signals` (a server in a test thread), stop it with
        `loop.call_soon_threadsafe(server.stop)`. `on_ready` runs once the server serves."""
        try:
            if install_signals:
                self._install_signals()
            self.listeners.start()
            self.tls_listeners.start()
            self._start_metrics()
            self.readiness.state = SERVING
            self._announce()
            self._start_timers()
            if on_ready is not None:
                on_ready()
            self.loop.run_forever()
        finally:
            try:
                self._close_metrics()
            finally:
                self._close()
        return self.exit_code

    def _start_metrics(self) -> None:
        listener = self.metrics_listener
        if listener is None:
            return
        listener.start()
        host, port = listener.address[:2]
        self.log.info("metrics-listening", host=host, port=port, worker=self.worker,
                      url=f"http://{format_listen(host, port)}/metrics")

    def _install_signals(self) -> None:
        handlers = {signal.SIGTERM: self.stop, signal.SIGINT: self.stop,
                    signal.SIGQUIT: self.stop,  # graceful, as nginx's and the master's
                    signal.SIGHUP: self.reload, signal.SIGUSR1: self.reopen_logs}
        self._previous_handlers = {sig: signal.getsignal(sig) for sig in handlers}
        for sig, handler in handlers.items():
            self.loop.add_signal_handler(sig, handler)
        for held in take_held():  # came while starting (see `hold_signals`): handled now
            self.loop.call_soon(handlers[signal.Signals(held)])

    def _remove_signals(self) -> None:
        """Undo _install_signals: the loop's handlers out, the ones from before back in."""
        self.loop.remove_signal_handlers()
        for sig, previous in self._previous_handlers.items():
            if previous is not None:
                signal.signal(sig, previous)
        self._previous_handlers = {}

    def _announce(self) -> None:
        for listener in self.listeners.activated:
            self._log_listening(listener, activated=True)
        for listener in self.listeners.by_address.values():
            self._log_listening(listener, activated=False)
        for listener in self.tls_listeners.by_address.values():
            self._log_listening(listener, activated=False, scheme="https")
        if self.config.files.directory is None and apploader.selected(self.config) is None:
            self.log.warning("files-disabled",
                             message="no files directory configured: /files/* answers 404")
        for directory in upload_directories(self.config):
            if not os.access(directory, os.W_OK | os.X_OK, effective_ids=True):
                self.log.warning("directory-not-writable", path=directory,
                                 message="uploads into it will fail")
        self.log.flush()
        self._status = self._status_text()
        self.notifier.ready(self._status)

    def _log_listening(self, listener: Listener, *, activated: bool,
                       scheme: str = "http") -> None:
        name = listener.address
        extra = {"socket_activated": True} if activated else {}
        if isinstance(name, tuple):
            host, port = name[:2]
            self.log.info("listening", host=host, port=port,
                          url=f"{scheme}://{format_listen(host, port)}", version=__version__,
                          **extra)
        else:
            self.log.info("listening", address=f"unix:{name!r}", version=__version__, **extra)

    def _start_timers(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        if interval is not None:
            self._timers.append(Periodic(self.loop, interval, self.notifier.watchdog))
        if self.notifier.enabled:
            self._timers.append(Periodic(self.loop, STATUS_INTERVAL_S, self._refresh_status))
        self._timers.append(Periodic(self.loop, WATCH_INTERVAL_S, self._watch_certificates))
        # cached fds of static files nobody asked for lately: closed even when idle
        self._timers.append(Periodic(self.loop, FILE_CACHE_SWEEP_S, sweep_all))

    def _status_text(self) -> str:
        http = self.http
        if self.stopping:
            return f"stopping: {len(http.connections)} connections left"
        where = ", ".join(format_listen(h, p) for h, p in self.addresses) or "no TCP listener"
        return (f"serving on {where}: {len(http.connections)} connections,"
                f" {http.requests_served} requests served")

    def _refresh_status(self) -> None:
        status = self._status_text()
        if status != self._status:
            self._status = status
            self.notifier.status(status)

    def stop(self) -> None:
        """Graceful stop: stop accepting, finish in-flight requests, close idle connections.

        With `timeouts.drain_s`, /readyz answers 503 at once and the listeners keep
        accepting that long first (a second stop request skips the rest of the drain)."""
        if self._stop_deadline is not None:
            return
        if self.readiness.state != DRAINING:
            self.readiness.state = DRAINING
            if not self.metrics_while_stopping:
                self._close_metrics()
            drain_s = self.config.timeouts.drain_s
            if drain_s > 0:
                self.notifier.stopping(f"draining for {drain_s:g} s", within_s=(
                    drain_s + self.config.timeouts.shutdown_s + STOP_SLACK_S))
                self.log.info("draining", drain_s=drain_s, connections=len(self.http.connections))
                self.log.flush()
                self.loop.call_later(drain_s, self.stop)
                return
        shutdown_s = self.config.timeouts.shutdown_s
        self._stop_deadline = time.monotonic() + shutdown_s
        self.notifier.stopping(self._status_text(), within_s=shutdown_s + STOP_SLACK_S)
        self.log.info("stopping", connections=len(self.http.connections),
                      shutdown_timeout_s=shutdown_s)
        self.listeners.close()
        self.tls_listeners.close()
        self.http.on_idle = self.loop.stop
        self.http.shutdown_connections()
        if not self.http.connections:
            self.loop.stop()
        else:
            self.loop.call_later(shutdown_s, self._force_stop)

    def _force_stop(self) -> None:
        """The shutdown deadline passed: drop what is left (an upload cut here removes its
        temp file; `_close` waits for that)."""
        remaining = len(self.http.connections)
        if remaining:
            self.log.warning("shutdown-timeout", closed_connections=remaining)
            self.http.abort_connections()
        self.loop.stop()

    def reopen_logs(self) -> None:
        """SIGUSR1: after logrotate moved the files, write to new files at the same paths."""
        for sink in (self.log.access_sink, self.log.error_sink):
            try:
                sink.reopen()
            except OSError as exc:
                self.log.error("logs-reopen-failed", None,
                               {"reason": f"{sink.target}: {exc.strerror}"})
                return
        self.log.info("logs-reopened")

    def _close(self) -> None:
        """Tear everything down; each step runs even if an earlier one failed."""
        with contextlib.ExitStack() as steps:  # callbacks run last-in, first-out
            steps.callback(self.notifier.close)
            steps.callback(lambda: self.log.close())  # the log in force at the end
            # "stopped" comes last: every abort has run and its log lines are in
            steps.callback(self._log_stopped)
            # runs queued clean-up, joins the pool threads: past a stop's deadline only
            # briefly (handlers stuck in the pool must not stretch shutdown_s by seconds)
            steps.callback(lambda: self.loop.close(pool_wait_s=self._pool_wait_s()))
            # whatever way the loop ended, no connection outlives it: their uploads abort
            steps.callback(self.http.abort_connections)
            steps.callback(self.listeners.close)
            steps.callback(self.tls_listeners.close)
            for timer in self._timers:
                steps.callback(timer.cancel)
            steps.callback(self._remove_signals)

    def _pool_wait_s(self) -> float:
        """How long the pool's threads may take to finish at exit: what is left of the stop's
        deadline (at least POOL_GRACE_S, for upload clean-ups queued by the final aborts),
        at most the pool's own default."""
        if self._stop_deadline is None:
            return 5.0
        return min(5.0, max(POOL_GRACE_S, self._stop_deadline - time.monotonic()))

    def _log_stopped(self) -> None:
        self.log.info("stopped", requests=self.http.requests_served,
                      exit_code=self.exit_code)

    # ---- reload ---------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: re-read the configuration from the start-up sources and apply it, or keep
        the running configuration and log why not."""
        if self.stopping:
            self.log.warning("reload-ignored", reason="the server is stopping")
            return
        if self.source is None:
            self.log.warning("reload-ignored", reason="no configuration source to re-read")
            return
        self.notifier.reloading("reloading the configuration")
        try:
            self.apply_config(self.source.load())
        except (ConfigError, ReloadError) as exc:
            self._count("reload_failures_total")
            self.log.error("reload-failed", None, {"reason": str(exc)})
        finally:  # systemd must not be left in "reloading", whatever happened
            self._status = self._status_text()
            self.notifier.ready(self._status)

    def apply_config(self, config: Config) -> None:
        """Switch the running server to `config`, or raise ReloadError having changed nothing."""
        staged = self._stage(config)
        self._commit(staged)

    def _stage(self, loaded: Config) -> _Staged:
        # Restart-only settings keep their running values (self.config is what runs), so no
        # later reload applies them, and each reload warns again while the file differs.
        later = pending_restart(self.config, loaded)
        config = keep_running(self.config, loaded)
        if self.daemonized:
            streams = [t for t in (config.log.access, config.log.error) if is_stream_target(t)]
            if streams:
                raise ReloadError(f"log target {streams[0]!r} is not possible in daemon mode;"
                                  " set log.access and log.error to files")
        with contextlib.ExitStack() as undo:
            log = None
            try:
                if config.log != self.config.log:
                    log = open_log(config)
                    undo.callback(log.close)
                rebind = self.listeners.prepare(listener_options(config.server,
                                                                 config.proxy.protocol),
                                                config.server.backlog)
                undo.callback(rebind.discard)
                tls_context = build_tls(config)  # always: the files may have changed
                tls_rebind = self.tls_listeners.prepare(self._tls_options(config),
                                                        config.server.backlog)
                undo.callback(tls_rebind.discard)
            except (LogOpenError, ListenError, TlsError) as exc:
                raise ReloadError(str(exc)) from None
            changed = changed_settings(self.config, config)
            app_changed = any(reload_class(name) is Reload.APP for name in changed)
            try:
                app = make_app(config, self.app_error) if app_changed else None
            except apploader.AppLoadError as exc:
                raise ReloadError(str(exc)) from None
            except (OSError, ValueError) as exc:  # e.g. a document root removed meanwhile
                raise ReloadError(f"cannot build the application: {exc}") from None
            undo.pop_all()
        return _Staged(config, log, rebind, app, tls_rebind, tls_context, later)

    def _count(self, name: str) -> None:
        self.http.counters[name] += 1

    def _commit(self, staged: _Staged) -> None:
        old, config = self.config, staged.config
        self.config = config
        if staged.log is not None:
            previous, self.log = self.log, staged.log
            self.http.log = staged.log
            previous.close()
        removed, added = list(staged.rebind.removed), list(staged.rebind.added)
        added_tls = list(staged.tls_rebind.added)
        self.listeners.commit(staged.rebind)
        removed += staged.tls_rebind.removed
        added += added_tls
        self.tls_listeners.commit(staged.tls_rebind)
        self._swap_tls(staged.tls_context, config)
        if staged.tls_context is not None:
            self.log.info("tls-reloaded", trigger="reload",
                          certificates=len(pairs(config.tls)))
        if staged.app is not None:
            self.app = staged.app
        self._apply_lb(config)
        self._count("reloads_total")
        self.http.settings = http_settings(config)
        self.http.websocket = websocket_settings(config)
        self.http.max_connections = config.server.max_connections
        self.http.set_server_name(server_name(config))
        if self.metrics_http is not None:
            self.metrics_http.set_server_name(server_name(config))
        self.loop.set_busy_poll(config.server.busy_poll_us / 1e6)
        changed = changed_settings(old, config)
        # A listener the reload added says where it listens, as at start-up (the bound port
        # of a ":0" address is known only here).
        for address in added:
            tls = address in added_tls
            group = self.tls_listeners if tls else self.listeners
            self._log_listening(group.by_address[address], activated=False,
                                scheme="https" if tls else "http")
        self.log.info("reloaded", changed=changed, listen_added=added, listen_removed=removed)
        if staged.later:
            self.log.warning("reload-needs-restart", settings=staged.later,
                             message="these settings take effect at the next start")
        upgraded = upgraded_version()
        if upgraded is not None:
            self.log.warning("upgrade-needs-restart", running=__version__, installed=upgraded,
                             message=UPGRADE_MESSAGE)
        if self.listeners.activated and {"server.listen", "server.listeners"} & set(changed):
            self.log.warning("reload-listen-ignored",
                             message="socket-activated: the service manager owns the sockets")
        if "files.directory" in changed and config.files.directory is None:
            self.log.warning("files-disabled",
                             message="no files directory configured: /files/* answers 404")

    # ---- certificate rotation -------------------------------------------------------------
    def _swap_tls(self, context: Any, config: Config) -> None:
        """New TLS connections use `context`; those already made keep theirs."""
        self.tls.context = context
        self.tls.handshake_timeout_s = config.timeouts.tls_handshake_s
        self._tls_stamps = file_stamps(watched_files(config.tls))

    def _watch_certificates(self) -> None:
        """`tls.watch`: rebuild the contexts when a certificate, key or CA file changed; a
        pair that does not load keeps the running one (logged once per change)."""
        config = self.config
        if not config.tls.watch or self.stopping:
            return
        stamps = file_stamps(watched_files(config.tls))
        if stamps == self._tls_stamps:
            return
        self._tls_stamps = stamps
        try:
            context = build_tls(config)
        except TlsError as exc:
            self.log.error("tls-reload-failed", None, {"reason": str(exc)})
            return
        self.tls.context = context
        self.log.info("tls-reloaded", trigger="watch", certificates=len(pairs(config.tls)))
