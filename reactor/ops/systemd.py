"""systemd integration: sd_notify messages and socket activation, without libsystemd.

Strategy
--------
Both protocols are small and documented in sd_notify(3) and sd_listen_fds(3); we speak them
directly instead of depending on python-systemd.

* Notify: NOTIFY_SOCKET names a unix datagram socket ("@" prefix = Linux abstract namespace).
  Each message is one datagram of newline-separated "KEY=value" fields. The socket is opened
  lazily, non-blocking, and kept. Delivery is best effort: a full queue, a vanished socket or a
  refused datagram is dropped, so a hiccup in the service manager can never block or kill the
  server. Without NOTIFY_SOCKET every method is a no-op.
* Socket activation: systemd passes listening sockets as fds 3..3+LISTEN_FDS-1 and sets
  LISTEN_PID to the pid it exec'd, so a forked child does not take them by mistake.

Only the loop thread calls a Notifier (from loop callbacks and timers); it holds no lock.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import stat
import time
from collections.abc import Mapping, MutableMapping

STOP_SLACK_S = 5.0
"""Added to a graceful stop's own deadline in the bound sent to systemd: the pool's grace,
closing the loop, flushing the logs, exiting."""

SD_LISTEN_FDS_START = 3
"""First fd systemd passes (sd_listen_fds(3): SD_LISTEN_FDS_START)."""

_ACTIVATION_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

_DROPPED_ERRNOS = frozenset({errno.EAGAIN, errno.ENOENT, errno.ECONNREFUSED})
"""Send failures expected when the manager is busy, gone or restarting: dropped silently."""


def _notify_address(value: str | None) -> str | None:
    """The AF_UNIX address for NOTIFY_SOCKET, or None when unset or not a unix path."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (systemd >= 254), which we do not speak


class Notifier:
    """Sends sd_notify(3) state changes to the service manager; harmless outside systemd."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._address = _notify_address(environ.get("NOTIFY_SOCKET"))
        self._sock: socket.socket | None = None
        self.dropped = 0
        """Datagrams that could not be delivered (for diagnostics; never raised)."""

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> None:
        """Send one datagram of "KEY=value" fields, e.g. notify("READY=1", "STATUS=...")."""
        if self._address is None or not fields:
            return
        for field in fields:
            if "\n" in field or "=" not in field:
                raise ValueError(f"sd_notify field must be one KEY=value line: {field!r}")
        payload = "\n".join(fields).encode("utf-8", "replace")
        try:
            self._socket().sendto(payload, self._address)
        except OSError as exc:
            self.dropped += 1
            if exc.errno not in _DROPPED_ERRNOS:
                # Anything else (EPERM under a sandbox, EMSGSIZE, ...) is a delivery problem
                # too; reopen next time in case the socket itself went bad.
                self.close()

    def ready(self, status: str | None = None) -> None:
        """Startup finished: listeners bound, ready to serve."""
        self.notify("READY=1", *self._status_field(status))

    def reloading(self, status: str | None = None) -> None:
        """Reload started (SIGHUP); call ready() when it is done.

        MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to this
        message; older versions ignore it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status_field(status))

    def stopping(self, status: str | None = None, *, within_s: float | None = None) -> None:
        """Graceful shutdown started; it ends within `within_s` seconds from now.

        That bound goes out as EXTEND_TIMEOUT_USEC (systemd >= 236): the stop the
        configuration allows (timeouts.drain_s + timeouts.shutdown_s) may be longer than the
        unit's TimeoutStopSec, and systemd would SIGKILL it midway (requests cut, buffered
        access lines lost). It only ever extends the unit's timeout, never shortens it.
        """
        extend = () if within_s is None else (
            f"EXTEND_TIMEOUT_USEC={math.ceil(within_s * 1_000_000)}",)
        self.notify("STOPPING=1", *extend, *self._status_field(status))

    def status(self, text: str) -> None:
        """Free-form one-line status shown by `systemctl status`."""
        self.notify(*self._status_field(text))

    def watchdog(self) -> None:
        """Keep-alive ping; send every watchdog_interval_s() seconds from a loop timer."""
        self.notify("WATCHDOG=1")

    def watchdog_interval_s(self) -> float | None:
        """How often to call watchdog(): half of WatchdogSec, or None if no watchdog is asked.

        Like sd_watchdog_enabled(3): WATCHDOG_USEC must be a positive integer and, when
        WATCHDOG_PID is set, it must be our pid. Also None when NOTIFY_SOCKET is unset, since a
        ping could not be delivered anyway.
        """
        if self._address is None:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        if pid is not None and _parse_int(pid) != os.getpid():
            return None
        usec = _parse_int(self._environ.get("WATCHDOG_USEC"))
        if usec is None or usec <= 0:
            return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    @staticmethod
    def _status_field(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        return ("STATUS=" + " ".join(text.splitlines()),)


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def listen_fds(
    environ: MutableMapping[str, str] = os.environ, *, unset: bool = True
) -> list[tuple[str, socket.socket]]:
    """Sockets passed by systemd socket activation, as (FileDescriptorName, socket) pairs.

    Returns [] when the process was not socket-activated (LISTEN_PID missing or not ours).
    Each socket is non-blocking and close-on-exec. With unset=True the LISTEN_* variables are
    removed from `environ` whatever the outcome, as sd_listen_fds(1) does, so child processes
    do not inherit them. Raises ValueError for malformed variables or an fd that is not a
    listening stream socket.
    """
    try:
        return _listen_fds(environ)
    finally:
        if unset:
            for name in _ACTIVATION_VARS:
                environ.pop(name, None)


def _listen_fds(environ: Mapping[str, str]) -> list[tuple[str, socket.socket]]:
    if _parse_int(environ.get("LISTEN_PID")) != os.getpid():
        return []
    raw_count = environ.get("LISTEN_FDS")
    count = _parse_int(raw_count)
    if count is None or count < 0:
        raise ValueError(f"LISTEN_FDS is not a count of fds: {raw_count!r}")
    fds = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)
    names = _fd_names(environ.get("LISTEN_FDNAMES"), count)
    for fd in fds:  # check all before wrapping any, so an error leaks no socket object
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise ValueError(f"LISTEN_FDS: fd {fd} is not open ({exc.strerror})") from None
        if not stat.S_ISSOCK(mode):
            raise ValueError(f"LISTEN_FDS: fd {fd} is not a socket")
        _check_listening_stream(fd)
    result = []
    for fd, name in zip(fds, names, strict=True):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sock.set_inheritable(False)  # FD_CLOEXEC
        result.append((name, sock))
    return result


def _check_listening_stream(fd: int) -> None:
    """Only a listening stream socket can be served: a datagram socket would be announced and
    never answer, and a connected one (Accept=yes) fails every accept() with EINVAL, a loop
    error each time the loop polls it. Raises ValueError naming the fix."""
    with socket.socket(fileno=os.dup(fd)) as probe:  # a duplicate: closing it keeps `fd`
        kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        accepting = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if kind != socket.SOCK_STREAM:
        names = {int(t): t.name for t in (socket.SOCK_DGRAM, socket.SOCK_SEQPACKET,
                                          socket.SOCK_RAW)}
        name = names.get(kind, f"type {kind}")
        raise ValueError(f"LISTEN_FDS: fd {fd} is a {name} socket, not a stream socket;"
                         " reactor serves HTTP on ListenStream= sockets")
    if not accepting:
        raise ValueError(f"LISTEN_FDS: fd {fd} is a stream socket that is not listening (a"
                         " connection, as Accept=yes passes); use Accept=no in the .socket unit")


def _fd_names(value: str | None, count: int) -> list[str]:
    if value is None:
        return ["unknown"] * count
    names = value.split(":") if count else []
    if len(names) != count:
        raise ValueError(f"LISTEN_FDNAMES has {len(names)} names for {count} fds: {value!r}")
    return [name or "unknown" for name in names]
