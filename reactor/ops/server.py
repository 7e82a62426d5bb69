"""Server assembly: config in, loop + app + listeners + logs + signals out, run to a clean stop.

Strategy
--------
Signals only record and wake the loop (`EventLoop.add_signal_handler`); the work happens in
loop callbacks here: TERM/INT stop gracefully, HUP reloads the configuration, USR1 reopens
the log files.

A reload is staged, then committed. Staging does everything that can fail -- read and
validate the configuration, open changed log files, bind added addresses, build the app --
and on any failure undoes itself and leaves the running configuration whole ("reload-failed"
in the error log, with the one-line reason). Committing only swaps objects: the HttpServer's
settings, app and log, the listener set. Connections in progress keep what they hold; new
connections and new requests see the new objects.

Under systemd (NOTIFY_SOCKET) the loop itself sends WATCHDOG=1 from a timer, so a wedged loop
stops the pings, and refreshes STATUS= with live figures.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reactor import __version__
from reactor.app.application import App, CompressionPolicy, build_app
from reactor.app.static import GzipCache, StaticMount
from reactor.conn.listener import Listener
from reactor.conn.server import HttpServer
from reactor.conn.shared import HttpSettings
from reactor.conn.ws import WebSocketSettings
from reactor.loop import EventLoop, TimerHandle
from reactor.ops.config import ConfigError, ConfigSource
from reactor.ops.daemon import is_stream_target
from reactor.ops.kinds import format_listen
from reactor.ops.listeners import ListenError, Listeners, Rebind, bind_addresses, close_sockets
from reactor.ops.logging import ServerLog
from reactor.ops.settings import SETTINGS, Config
from reactor.ops.systemd import Notifier

# Longest a buffered log line waits before it is written (a crash loses at most this much).
LOG_FLUSH_DELAY_S = 0.05
SERVER_NAME = f"reactor/{__version__}".encode()
STATUS_INTERVAL_S = 2.0
"""How often STATUS= (connections, requests served) is refreshed under systemd."""

RESTART_ONLY = frozenset({"server.pool_threads", "server.workers", "daemon.pidfile",
                          "daemon.user", "daemon.group", "daemon.umask"})
"""Settings a reload cannot change in a running process: it logs that they wait for a restart."""

APP_SECTIONS = ("files", "compression")


class LogOpenError(Exception):
    """A log file could not be opened; str() is one line naming it."""


def open_log(config: Config) -> ServerLog:
    """The access and error logs `config` names, opened. Raises LogOpenError."""
    log = config.log
    try:
        return ServerLog(access=log.access, error=log.error, level=log.level, fmt=log.format)
    except OSError as exc:
        raise LogOpenError(f"cannot open log file {exc.filename}: {exc.strerror}") from None


def http_settings(config: Config) -> HttpSettings:
    limits, timeouts = config.limits, config.timeouts
    return HttpSettings(
        max_request_line=limits.max_request_line, max_header_bytes=limits.max_header_bytes,
        max_header_fields=limits.max_header_fields, max_body_bytes=limits.max_body_bytes,
        header_s=timeouts.header_s, keepalive_s=timeouts.keepalive_s, body_s=timeouts.body_s,
        write_s=timeouts.write_s)


def websocket_settings(config: Config) -> WebSocketSettings:
    ws = config.websocket
    return WebSocketSettings(ping_interval_s=ws.ping_interval_s,
                             ping_timeout_s=ws.ping_timeout_s,
                             max_message_bytes=ws.max_message_bytes, deflate=ws.deflate)


def static_mounts(config: Config) -> list[StaticMount]:
    """The document roots of [static]: `root` at `prefix`, then each [[static.mounts]]."""
    static = config.static
    mounts = []
    if static.root is not None:
        mounts.append(StaticMount(
            static.prefix, static.root, index=static.index, listing=static.listing,
            symlinks=static.symlinks, dotfiles=static.dotfiles,
            cache_control=static.cache_control, max_ranges=static.max_ranges,
            mime_overrides=dict(static.mime_overrides), uploads=static.uploads))
    mounts.extend(StaticMount(**mount) for mount in static.mounts)
    return mounts


def make_app(config: Config) -> App:
    """The built-in application for the [files], [static] and [compression] settings."""
    directory = config.files.directory
    compression = config.compression
    static = config.static
    return build_app(
        directory=str(directory) if directory is not None else None,
        uploads=config.files.uploads,
        compression=CompressionPolicy(enabled=compression.enabled, level=compression.level,
                                      min_size=compression.min_size, types=compression.types),
        mounts=static_mounts(config),
        gzip_cache=GzipCache(total_bytes=static.gzip_cache_bytes,
                             file_max_bytes=static.gzip_cache_file_max))


def changed_settings(old: Config, new: Config) -> list[str]:
    """The names ("limits.max_body_bytes") of the settings whose values differ."""
    return [s.name for s in SETTINGS
            if getattr(getattr(old, s.section), s.key) != getattr(getattr(new, s.section), s.key)]


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
    app: App | None


class Server:
    """One reactor process: owns the loop, the listeners and the logs.

    `bound` are sockets already bound for `config.server.listen` (by address), `listen_sockets`
    sockets passed by socket activation (never re-bound); with neither, the server binds.
    `log` is an already open ServerLog; `source` is where SIGHUP re-reads the configuration.
    The server owns (and closes) everything passed to it once the constructor returns.
    """

    def __init__(self, config: Config, *, listen_sockets: Sequence[socket.socket] | None = None,
                 bound: dict[str, socket.socket] | None = None, log: ServerLog | None = None,
                 source: ConfigSource | None = None, notifier: Notifier | None = None,
                 daemonized: bool = False) -> None:
        self.config = config
        self.source = source
        self.daemonized = daemonized
        with contextlib.ExitStack() as owned:  # undone if construction fails half-way
            if log is None:
                log = open_log(config)
                owned.callback(log.close)
            if listen_sockets is None and bound is None:
                bound = bind_addresses(config.server.listen, config.server.backlog)
                owned.callback(close_sockets, list(bound.values()))
            self.loop = EventLoop(pool_threads=config.server.pool_threads)
            owned.callback(self.loop.close)
            self._assemble(log, bound or {}, listen_sockets or (), notifier or Notifier())
            owned.pop_all()

    def _assemble(self, log: ServerLog, bound: dict[str, socket.socket],
                  activated: Sequence[socket.socket], notifier: Notifier) -> None:
        config = self.config
        self.log = log
        self.loop.set_exception_handler(self._loop_error)
        self.loop.add_before_select(self._flush_logs)
        self.app = make_app(config)
        self.http = HttpServer(self.loop, self.app, log, settings=http_settings(config),
                               server_name=SERVER_NAME,
                               max_connections=config.server.max_connections)
        self.http.websocket = websocket_settings(config)
        self.listeners = Listeners(self.loop, self.http.accept, bound=bound,
                                   activated=activated)
        self.notifier = notifier
        self._timers: list[Periodic] = []
        self._previous_handlers: dict[int, Any] = {}
        self._status = ""
        self._flush_timer: Any = None
        self._stop_deadline: float | None = None
        self.exit_code = 0

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every TCP listener."""
        names = [listener.address for listener in self.listeners.all()]
        return [name[:2] for name in names if isinstance(name, tuple)]

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

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
            self._announce()
            self._start_timers()
            if on_ready is not None:
                on_ready()
            self.loop.run_forever()
        finally:
            self._close()
        return self.exit_code

    def _install_signals(self) -> None:
        handlers = {signal.SIGTERM: self.stop, signal.SIGINT: self.stop,
                    signal.SIGHUP: self.reload, signal.SIGUSR1: self.reopen_logs}
        self._previous_handlers = {sig: signal.getsignal(sig) for sig in handlers}
        for sig, handler in handlers.items():
            self.loop.add_signal_handler(sig, handler)

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
        if self.config.files.directory is None:
            self.log.warning("files-disabled",
                             message="no files directory configured: /files/* answers 404")
        self.log.flush()
        self._status = self._status_text()
        self.notifier.ready(self._status)

    def _log_listening(self, listener: Listener, *, activated: bool) -> None:
        name = listener.address
        extra = {"socket_activated": True} if activated else {}
        if isinstance(name, tuple):
            host, port = name[:2]
            self.log.info("listening", host=host, port=port,
                          url=f"http://{format_listen(host, port)}", version=__version__,
                          **extra)
        else:
            self.log.info("listening", address=f"unix:{name!r}", version=__version__, **extra)

    def _start_timers(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        if interval is not None:
            self._timers.append(Periodic(self.loop, interval, self.notifier.watchdog))
        if self.notifier.enabled:
            self._timers.append(Periodic(self.loop, STATUS_INTERVAL_S, self._refresh_status))

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
        """Graceful stop: stop accepting, finish in-flight requests, close idle connections."""
        if self._stop_deadline is not None:
            return
        shutdown_s = self.config.timeouts.shutdown_s
        self._stop_deadline = time.monotonic() + shutdown_s
        self.notifier.stopping(self._status_text())
        self.log.info("stopping", connections=len(self.http.connections),
                      shutdown_timeout_s=shutdown_s)
        self.listeners.close()
        self.http.on_idle = self.loop.stop
        self.http.shutdown_connections()
        if not self.http.connections:
            self.loop.stop()
        else:
            self.loop.call_later(shutdown_s, self._force_stop)

    def _force_stop(self) -> None:
        remaining = len(self.http.connections)
        if remaining:
            self.log.warning("shutdown-timeout", closed_connections=remaining)
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
            steps.callback(self.loop.close)  # joins the pool threads
            steps.callback(self.notifier.close)
            steps.callback(lambda: self.log.close())  # the log in force at the end
            steps.callback(self._log_stopped)
            steps.callback(self.listeners.close)
            for timer in self._timers:
                steps.callback(timer.cancel)
            steps.callback(self._remove_signals)

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
            self.log.error("reload-failed", None, {"reason": str(exc)})
        finally:  # systemd must not be left in "reloading", whatever happened
            self._status = self._status_text()
            self.notifier.ready(self._status)

    def apply_config(self, config: Config) -> None:
        """Switch the running server to `config`, or raise ReloadError having changed nothing."""
        staged = self._stage(config)
        self._commit(staged)

    def _stage(self, config: Config) -> _Staged:
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
                rebind = self.listeners.prepare(config.server.listen, config.server.backlog)
            except (LogOpenError, ListenError) as exc:
                raise ReloadError(str(exc)) from None
            undo.callback(rebind.discard)
            app_changed = any(getattr(config, s) != getattr(self.config, s)
                              for s in APP_SECTIONS)
            app = make_app(config) if app_changed else None
            undo.pop_all()
        return _Staged(config, log, rebind, app)

    def _commit(self, staged: _Staged) -> None:
        old, config = self.config, staged.config
        self.config = config
        if staged.log is not None:
            previous, self.log = self.log, staged.log
            self.http.log = staged.log
            previous.close()
        removed, added = list(staged.rebind.removed), list(staged.rebind.added)
        self.listeners.commit(staged.rebind)
        if staged.app is not None:
            self.app = self.http.app = staged.app
        self.http.settings = http_settings(config)
        self.http.websocket = websocket_settings(config)
        self.http.max_connections = config.server.max_connections
        changed = changed_settings(old, config)
        self.log.info("reloaded", changed=changed, listen_added=added, listen_removed=removed)
        later = sorted(RESTART_ONLY.intersection(changed))
        if later:
            self.log.warning("reload-needs-restart", settings=later,
                             message="these settings take effect at the next start")
        if self.listeners.activated and "server.listen" in changed:
            self.log.warning("reload-listen-ignored",
                             message="socket-activated: the service manager owns the sockets")
        if "files.directory" in changed and config.files.directory is None:
            self.log.warning("files-disabled",
                             message="no files directory configured: /files/* answers 404")
