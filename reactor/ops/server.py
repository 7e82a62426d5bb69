"""Server assembly: config in, loop + app + listeners + logs + signals out, run to a clean stop.

Signals only record and wake the loop (`EventLoop.add_signal_handler`); the work happens in
loop callbacks here: TERM/INT stop gracefully, USR1 reopens log files.
"""

from __future__ import annotations

import signal
import socket
import time

from reactor import __version__
from reactor.app.application import CompressionPolicy, build_app
from reactor.conn.http import HttpServer, HttpSettings
from reactor.conn.listener import Listener, bind_tcp
from reactor.loop import EventLoop
from reactor.ops.kinds import parse_listen
from reactor.ops.logging import ServerLog
from reactor.ops.settings import Config
from reactor.ops.systemd import Notifier

SERVER_NAME = f"reactor/{__version__}".encode()


def http_settings(config: Config) -> HttpSettings:
    limits, timeouts = config.limits, config.timeouts
    return HttpSettings(
        max_request_line=limits.max_request_line, max_header_bytes=limits.max_header_bytes,
        max_header_fields=limits.max_header_fields, max_body_bytes=limits.max_body_bytes,
        header_s=timeouts.header_s, keepalive_s=timeouts.keepalive_s, body_s=timeouts.body_s,
        write_s=timeouts.write_s)


class Server:
    """One reactor process: owns the loop, the listeners and the logs."""

    def __init__(self, config: Config, *, listen_sockets: list[socket.socket] | None = None
                 ) -> None:
        self.config = config
        self.log = ServerLog(access=config.log.access, error=config.log.error,
                             level=config.log.level, fmt=config.log.format)
        self.loop = EventLoop(pool_threads=config.server.pool_threads)
        self.loop.set_exception_handler(self._loop_error)
        self.loop.add_before_select(self.log.flush)
        directory = config.files.directory
        compression = config.compression
        self.app = build_app(
            directory=str(directory) if directory is not None else None,
            uploads=config.files.uploads,
            compression=CompressionPolicy(enabled=compression.enabled, level=compression.level,
                                          min_size=compression.min_size,
                                          types=compression.types))
        self.http = HttpServer(self.loop, self.app, self.log, settings=http_settings(config),
                               server_name=SERVER_NAME,
                               max_connections=config.server.max_connections)
        self.notifier = Notifier()
        self.listeners: list[Listener] = []
        sockets = listen_sockets if listen_sockets is not None else self._bind()
        for sock in sockets:
            self.listeners.append(Listener(self.loop, sock, self.http.accept))
        self._stop_deadline: float | None = None
        self.exit_code = 0

    def _bind(self) -> list[socket.socket]:
        sockets = []
        try:
            for address in self.config.server.listen:
                host, port = parse_listen(address)
                sockets.append(bind_tcp(host, port, backlog=self.config.server.backlog))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [listener.address[:2] for listener in self.listeners]

    def _loop_error(self, context: str, exc: BaseException) -> None:
        self.log.error("loop-error", exc, {"context": context})

    # ---- lifecycle ------------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> int:
        """Serve until stopped. Without `install_signals` (a server in a test thread), stop
        it with `loop.call_soon_threadsafe(server.stop)`."""
        loop = self.loop
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        for listener in self.listeners:
            listener.start()
        if self.config.files.directory is None:
            self.log.warning("files-disabled",
                             message="no files directory configured: /files/* answers 404")
        for host, port in self.addresses:
            shown = f"[{host}]" if ":" in host else host
            self.log.info("listening", host=host, port=port, url=f"http://{shown}:{port}",
                          version=__version__)
        self.log.flush()
        self.notifier.ready(f"serving on {', '.join(f'{h}:{p}' for h, p in self.addresses)}")
        try:
            loop.run_forever()
        finally:
            self._close()
        return self.exit_code

    def stop(self) -> None:
        """Graceful stop: stop accepting, finish in-flight requests, close idle connections."""
        if self._stop_deadline is not None:
            return
        shutdown_s = self.config.timeouts.shutdown_s
        self._stop_deadline = time.monotonic() + shutdown_s
        self.notifier.stopping()
        self.log.info("stopping", connections=len(self.http.connections),
                      shutdown_timeout_s=shutdown_s)
        for listener in self.listeners:
            listener.close()
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

    def _reopen_logs(self) -> None:
        self.log.reopen()
        self.log.info("logs-reopened")

    def _close(self) -> None:
        self.loop.remove_signal_handlers()
        for listener in self.listeners:
            try:
                listener.close()
            except OSError:
                pass
        self.log.info("stopped", requests=self.http.requests_served)
        self.log.close()
        self.loop.close()
