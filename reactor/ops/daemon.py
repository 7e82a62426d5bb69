"""Daemon mode (`reactor serve --daemon`) and privileges: pid file, detaching, user switch.

Strategy
--------
Everything that can fail with a message for the operator -- the pid file check, binding,
opening the logs -- happens before detaching, in the process started from the terminal. Then
`detach` forks: the parent waits on a pipe while the child becomes the daemon through
python-daemon's `DaemonContext` (detach from the session, working directory /, umask, every
fd closed except the listening sockets, the log files and the pipe, stdio to /dev/null, pid
file written). The daemon reports on the pipe once it serves ("ok") or why it could not
("error ..."), and the parent exits 0 or prints the reason and exits 1 -- so the command
returns when the daemon serves, as systemd's Type=forking and init scripts expect.

`PidFile` is ours rather than lockfile's: created with O_EXCL, holding the pid and a newline;
a file naming a process that no longer exists (or a zombie) is stale and is replaced, a live
one refuses the start. It is removed at exit only if it still holds our pid.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactor.ops.workerlink import read_line

if TYPE_CHECKING:
    import daemon  # python-daemon ships no type hints (ignored in [tool.mypy])

READY_TIMEOUT_S = 60.0
"""How long the terminal waits for the daemon to report it serves."""


class DaemonError(Exception):
    """Daemon mode or a user switch cannot go ahead; str() is one line for the operator."""


# --- pid file -----------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True if `pid` names a running process (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class PidFile:
    """A pid file that refuses a second live server; a context manager for DaemonContext."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stale_pid: int | None = None
        """The pid a stale file named when clear_stale() removed it (0: none readable)."""
        self._pid: int | None = None

    def read_pid(self) -> int | None:
        """The pid in the file; None when there is no file or no number in it."""
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DaemonError(f"cannot read pid file {self.path}: {exc.strerror}") from None
        text = text.strip()
        return int(text) if text.isascii() and text.isdigit() else None

    def clear_stale(self) -> int | None:
        """Before starting: raise DaemonError if a live process holds the file; remove a stale
        one and return the pid it named (0 if it named none); None when there was no file."""
        if not self.path.exists():
            return None
        pid = self.read_pid()
        if pid is not None and pid != os.getpid() and process_alive(pid):
            raise DaemonError(f"already running: pid file {self.path} holds pid {pid},"
                              " a live process")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DaemonError(f"cannot remove stale pid file {self.path}: {exc.strerror}"
                              ) from None
        self.stale_pid = pid or 0
        return self.stale_pid

    def acquire(self) -> None:
        """Write our pid into a new file (a stale file in the way is replaced once)."""
        for attempt in (1, 2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o644)
            except FileExistsError:
                if attempt == 2:
                    raise DaemonError(f"pid file {self.path} appeared while starting") from None
                self.clear_stale()
                continue
            except OSError as exc:
                raise DaemonError(f"cannot create pid file {self.path}: {exc.strerror}"
                                  ) from None
            pid = os.getpid()
            try:
                os.write(fd, b"%d\n" % pid)
            finally:
                os.close(fd)
            self._pid = pid
            return

    def release(self) -> None:
        """Remove the file if it is still ours (best effort: never raises)."""
        if self._pid is None:
            return
        try:
            if self.read_pid() == self._pid:
                self.path.unlink()
        except (OSError, DaemonError):
            pass  # e.g. the directory is not writable after a user switch
        self._pid = None

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# --- detaching ----------------------------------------------------------------------------------


class Detached:
    """The daemon's end of the start-up pipe, and its DaemonContext (closed at exit)."""

    def __init__(self, context: daemon.DaemonContext, pipe_fd: int) -> None:
        self.context = context
        self._pipe_fd = pipe_fd

    def ready(self) -> None:
        """Tell the waiting terminal that the daemon serves; it exits 0."""
        self._report(b"ok\n")

    def failed(self, message: str) -> None:
        """Tell the waiting terminal why the daemon could not start; it prints it, exits 1."""
        self._report(b"error " + " ".join(message.splitlines()).encode("utf-8", "replace")
                     + b"\n")

    def _report(self, data: bytes) -> None:
        if self._pipe_fd < 0:
            return
        try:
            os.write(self._pipe_fd, data)
        except OSError:
            pass  # the terminal's process is gone: nobody to tell
        os.close(self._pipe_fd)
        self._pipe_fd = -1

    def forget(self) -> None:
        """In a forked worker: close our copy of the pipe without a word (the master
        reports; a worker holding the write end kept the terminal waiting for EOF)."""
        if self._pipe_fd >= 0:
            os.close(self._pipe_fd)
            self._pipe_fd = -1

    def close(self) -> None:
        """At exit: close the pipe if still open, then the context (removes the pid file)."""
        self._report(b"")
        self.context.close()


def detach(*, preserve: Iterable[Any], pidfile: PidFile | None, umask: int) -> Detached:
    """Become a daemon. Returns in the daemon only: the original process waits for the
    daemon's report and exits with it (0 once the daemon serves, 1 if it could not start).

    `preserve` lists what must stay open (sockets, fds). Call it with no other threads running.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child:
        os.close(write_fd)
        os._exit(_await_daemon(read_fd, child))
    os.close(read_fd)
    import daemon  # python-daemon, needed by --daemon only

    context = daemon.DaemonContext(
        working_directory="/", umask=umask, detach_process=True, pidfile=pidfile,
        files_preserve=[*preserve, write_fd])
    try:
        context.open()
    except Exception as exc:  # reported to the terminal, which prints it
        reason = str(exc) if isinstance(exc, DaemonError) else f"cannot become a daemon: {exc}"
        Detached(context, write_fd).failed(reason)
        os._exit(1)
    return Detached(context, write_fd)


def _await_daemon(read_fd: int, child: int) -> int:
    """In the original process: the exit code for the daemon's report on `read_fd`."""
    report = _read_report(read_fd, time.monotonic() + READY_TIMEOUT_S)
    try:
        os.waitpid(child, 0)  # the first fork's child exits as soon as it forked again
    except ChildProcessError:
        pass
    if report == "ok":
        return 0
    if report.startswith("error "):
        message = report.removeprefix("error ")
    elif report == "timeout":
        message = f"the daemon did not report ready within {READY_TIMEOUT_S:g} s"
    else:
        message = "the daemon exited during start-up (see the error log)"
    print(f"reactor: {message}", file=sys.stderr, flush=True)
    return 1


def _read_report(read_fd: int, deadline: float) -> str:
    """The daemon's report: its first line, or "" if the pipe closed without one. Not
    EOF: whatever the daemon forked (its workers) may still hold the pipe's write end."""
    data = read_line(read_fd, deadline)
    if data is None:
        return "timeout"
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


# --- privileges ---------------------------------------------------------------------------------


def _uid_for(user: str) -> tuple[int, str | None, int | None]:
    """(uid, name, primary gid) for a user name or numeric id; unknown ids have no name."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return int(user), None, None
        raise DaemonError(f"unknown user {user!r}") from None
    return entry.pw_uid, entry.pw_name, entry.pw_gid


def _gid_for(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise DaemonError(f"unknown group {group!r}") from None


def drop_privileges(user: str | None, group: str | None,
                    files: Iterable[tuple[str, int]] = ()) -> str | None:
    """Switch to `user` (and `group`, else the user's primary group) -- after binding and
    opening the logs. `files` are (path, descriptor) of the log files the server writes:
    they are given to that user first, as nginx gives its logs to its workers' user
    (created by root, the service user's logrotate -- `su reactor reactor` -- could
    not read them to compress them). Returns "user:group" as switched to, or None when
    nothing is asked. Raises DaemonError when the switch is impossible."""
    if user is None and group is None:
        return None
    uid, name, user_gid = _uid_for(user) if user is not None else (os.getuid(), None, None)
    gid = _gid_for(group) if group is not None else user_gid
    if gid is None:
        raise DaemonError(f"user {user} has no passwd entry: set daemon.group as well")
    if (uid, gid) == (os.getuid(), os.getgid()):
        return f"{uid}:{gid}"
    if os.geteuid() != 0:
        raise DaemonError(f"cannot switch to user {user or uid}, group {group or gid}:"
                          " not running as root")
    for path, fd in files:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_uid != uid:
                os.fchown(fd, uid, -1)  # the group stays (logrotate's `create` sets one)
        except OSError as exc:
            raise DaemonError(f"cannot give log file {path} to user {user or uid}:"
                              f" {exc.strerror}") from None
    try:
        if name is not None and user is not None:
            os.initgroups(name, gid)
        else:
            os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise DaemonError(f"cannot switch to user {user or uid}: {exc.strerror}") from None
    return f"{uid}:{gid}"


def is_stream_target(target: str) -> bool:
    """True for the log targets that write to the terminal ("-" stdout, "stderr")."""
    return target in ("-", "stderr")

