"""Listening sockets: bind, accept in batches until EAGAIN, back off when out of descriptors."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reactor.loop import EventLoop, TimerHandle

if TYPE_CHECKING:
    from reactor.conn.tls import TlsContexts

ACCEPT_BATCH = 128
# When the process is out of file descriptors the listening socket stays readable; stop
# watching it briefly instead of spinning on accept().
EMFILE_BACKOFF_S = 0.1

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
    tls: TlsContexts | None = None


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

    __slots__ = ("_loop", "_on_accept", "_paused_timer", "options", "sock")

    def __init__(self, loop: EventLoop, sock: socket.socket, on_accept: AcceptCallback,
                 options: ListenerOptions | None = None) -> None:
        self._loop = loop
        self.sock = sock
        self._on_accept = on_accept
        self.options = options if options is not None else ListenerOptions("")
        self._paused_timer: TimerHandle | None = None

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
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._loop.remove_reader(self.sock)
                    self._paused_timer = self._loop.call_later(EMFILE_BACKOFF_S, self._resume)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client gave up before we got to it
                raise
            on_accept(conn, addr)

    def _resume(self) -> None:
        self._paused_timer = None
        self.start()
