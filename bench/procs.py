"""Child processes: start each in its own process group, stop them all, measure RSS.

Every process the harness starts goes through :func:`spawn`, which records its
command line (for the report) and registers it, so :func:`stop_all` can kill every
process group at the end, on error, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from bench import HOST

COMMANDS: list[str] = []
_LIVE: dict[int, subprocess.Popen] = {}


def spawn(
    argv: Sequence[str],
    *,
    stdout: IO | int | None = subprocess.DEVNULL,
    stderr: IO | int | None = subprocess.STDOUT,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group) and register it."""
    COMMANDS.append(shlex.join(argv))
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    _LIVE[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    _LIVE.pop(proc.pid, None)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if not group_pids(proc.pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_all() -> None:
    """Stop every registered process group (safe to call more than once)."""
    for proc in list(_LIVE.values()):
        stop(proc, grace=2.0)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt so ``finally`` blocks run."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _proc_entries() -> Iterator[tuple[int, str]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                yield int(entry.name), Path(entry.path, "stat").read_text()
            except OSError:
                continue


def group_pids(pgid: int) -> list[int]:
    """PIDs whose process group is ``pgid`` (a server and the workers it forked)."""
    pids = []
    for pid, stat in _proc_entries():
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(pid)
    return pids


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds used so far by the processes of group ``pgid`` (all their
    threads)."""
    ticks = 0
    for _pid, stat in _proc_entries():
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 12 and int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> float:
    """CPU seconds of every thread of `pid` so far, from /proc/PID/task/*/schedstat
    (nanoseconds: finer than the scheduler ticks `group_cpu_s` counts)."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just exited
    if total_ns:
        return total_ns / 1e9
    return sum(cpu_ticks(pid)) / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks so far of `pid`: all its threads, exited ones included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def status_kib(pid: int, key: str) -> int:
    """A KiB figure of /proc/PID/status (`VmRSS`, `VmHWM`, ...); 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 when gone)."""
    return status_kib(pid, "VmRSS")


def start_reactor(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """`reactor serve` on 127.0.0.1, a port the kernel picks, no access log, settings from
    `env` (REACTOR_* variables); returns the process and its port once it listens."""
    reactor = Path(sys.executable).parent / "reactor"
    server = subprocess.Popen(
        [str(reactor), "serve", "--no-config", "--host", HOST, "--port", "0", "--log", "off"],
        env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)  # its own group: `stop` ends it
    assert server.stderr is not None
    for raw in server.stderr:
        line = json.loads(raw)
        if line.get("event") == "listening":
            return server, int(line["port"])
    raise SystemExit("reactor did not start")


def group_rss_kib(pgid: int) -> int:
    """Summed VmRSS of a process group (gunicorn and nginx: master plus worker)."""
    return sum(rss_kib(pid) for pid in group_pids(pgid))


def run_quiet(argv: Sequence[str], timeout: float = 30.0) -> str:
    """Run a short command and return stdout+stderr ('' when it cannot run)."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()
