"""Listening sockets: bind, accept in batches until EAGAIN, back off when out of descriptors.

Out of descriptors (EMFILE, ENFILE) or kernel memory, accept() fails while the listening
socket stays readable; the listener stops watching it for `EMFILE_BACKOFF_S` and retries.
Clients wait in the kernel's accept queue meanwhile. The operator hears of it through
`EventLoop.report` ("accept-paused", errno name, descriptor limit, back-off): one line when
it starts, then at most one per `PAUSED_REPORT_INTERVAL_S` while it lasts, counting the
back-offs in between -- a line per failed accept would flood the log exactly when it matters.

Each accepted socket leaves here non-blocking with Nagle off. On Linux an accepted TCP socket
inherits TCP_NODELAY from its listener, so the listener sets it once on itself and a new
connection costs no setsockopt (nginx's accept path: accept, then straight to reading).
"""

from __future__ import annotations

import errno
import resource
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reactor.loop import EventLoop, TimerHandle
from reactor.loop.window import ReportWindow

if TYPE_CHECKING:
    from reactor.conn.tls import TlsContexts

ACCEPT_BATCH = 128
# When the process is out of file descriptors the listening socket stays readable; stop
# watching it briefly instead of spinning on accept().
EMFILE_BACKOFF_S = 0.1
PAUSED_REPORT_INTERVAL_S = 10.0
_TCP = (socket.AF_INET, socket.AF_INET6)
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

AcceptCallback = Callable[[socket.socket, tuple], None]


@dataclass(frozen=True, slots=True)
class ListenerOptions:
    """What one listener says about the connections it accepts.

    `address` is the configured "HOST:PORT" (or a description of a socket passed in by the
    service manager). Later capabilities add their per-listener switches here (TLS, PROXY
    protocol); the server's `acceptor(options)` turns them into a connection factory.
    `tls` holds the TLS contexts of a TLS listener (None: plain TCP); a reload replaces
    the context inside it, so the listener keeps its options.
    """

    address: str
    proxy_protocol: bool = False
    """Every connection starts with a PROXY protocol header (v1 or v2) from a trusted proxy."""
    tls: TlsContexts | None = None
    """TLS terminated on this listener with these (reloadable) contexts; None: plain."""


Acceptor = Callable[[ListenerOptions], AcceptCallback]
"""Makes the accept callback (the connection factory) for a listener with these options."""


def bind_tcp(host: str, port: int, *, backlog: int = 1024, reuse_port: bool = False
             ) -> socket.socket:
    """A non-blocking listening TCP socket on (host, port); IPv6 when host contains ':'.

    `reuse_port` lets several sockets (one per worker process) share the address, the kernel
    spreading new connections across them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """Accepts connections on one listening socket and hands them to `on_accept`."""

    __slots__ = ("_errno", "_loop", "_nodelay_each", "_on_accept", "_paused_timer", "_pauses",
                 "_report_window", "options", "sock")

    def __init__(self, loop: EventLoop, sock: socket.socket, on_accept: AcceptCallback,
                 options: ListenerOptions | None = None) -> None:
        self._loop = loop
        self.sock = sock
        self._on_accept = on_accept
        self.options = options if options is not None else ListenerOptions("")
        self._paused_timer: TimerHandle | None = None
        self._pauses = 0  # back-offs not yet reported
        self._errno = 0  # of the last one
        self._report_window = ReportWindow(loop, PAUSED_REPORT_INTERVAL_S, self._report_pauses)
        # Whether each accepted socket needs its own TCP_NODELAY: not when it inherits the
        # listener's, and never for a unix socket (no Nagle there).
        self._nodelay_each = sock.family in _TCP
        if self._nodelay_each and sys.platform == "linux":
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._nodelay_each = False
            except OSError:
                pass

    @property
    def address(self) -> tuple:
        return self.sock.getsockname()

    def start(self) -> None:
        self._loop.add_reader(self.sock, self._accept_ready)

    def stop(self) -> None:
        """Stop accepting; the socket stays open (a graceful stop closes it afterwards)."""
        self._loop.remove_reader(self.sock)
        if self._paused_timer is not None:
            self._paused_timer.cancel()
            self._paused_timer = None

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return  # already closed
        self._report_window.cancel()
        self.stop()
        self.sock.close()

    def _accept_ready(self) -> None:
        accept, on_accept = self.sock.accept, self._on_accept
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause(exc.errno)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client gave up before we got to it
                raise
            try:
                conn.setblocking(False)
                if self._nodelay_each:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # gone already (reset before we got to it)
                conn.close()
                continue
            on_accept(conn, addr)

    def _pause(self, code: int) -> None:
        loop = self._loop
        loop.remove_reader(self.sock)
        self._paused_timer = loop.call_later(EMFILE_BACKOFF_S, self._resume)
        self._pauses += 1
        self._errno = code
        self._report_window.note()

    def _report_pauses(self) -> bool:
        if not self._pauses:
            return False
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        code = self._errno
        self._loop.report("accept-paused", {
            "errno": errno.errorcode.get(code, str(code)), "open_files_limit": soft,
            "backoff_s": EMFILE_BACKOFF_S, "pauses": self._pauses,
            "listen": self.options.address or _describe(self.sock)})
        self._pauses = 0
        return True

    def _resume(self) -> None:
        self._paused_timer = None
        self.start()


def _describe(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else f"unix:{name!r}"
