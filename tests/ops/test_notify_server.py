"""systemd integration of a real `reactor serve`: sd_notify datagrams on a real unix socket,
the loop-driven watchdog, live STATUS, and socket activation through a real exec."""

from __future__ import annotations

import itertools
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EVENT_WAIT_S
from tests.ops.serverproc import (
    Client,
    ServeProcess,
    base_config,
    get,
    reactor_argv,
    server_env,
    write_config,
)


class Manager:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.messages.append(message)
        return message

    def wait_for(self, key: str, timeout: float = 10.0,
                 when: object = None) -> dict[str, str]:
        """The next message with `key` (and, if given, `when(message)` true)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.receive(remaining)
            if message and key in message and (when is None or when(message)):  # type: ignore[operator]
                return message
        raise AssertionError(f"no {key} message; got {self.messages!r}")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    manager = Manager(tmp_path / "notify")
    yield manager
    manager.sock.close()


def test_ready_watchdog_status_reload_and_stopping(manager: Manager, tmp_path: Path) -> None:
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path))
    env = server_env(NOTIFY_SOCKET=str(manager.path), WATCHDOG_USEC="200000")
    server = ServeProcess(["--config", str(config)], cwd=tmp_path, env=env)
    try:
        ready = manager.wait_for("READY")
        port = server.port
        assert ready["READY"] == "1"
        assert ready["STATUS"] == f"serving on 127.0.0.1:{port}: 0 connections, 0 requests served"

        # The loop keeps pinging on its own, every 0.1 s: half of WATCHDOG_USEC, a rule
        # tests/ops/test_systemd.py checks on Notifier.watchdog_interval_s().
        for _ in range(4):
            manager.wait_for("WATCHDOG", timeout=EVENT_WAIT_S)

        client = Client(port)
        for _ in range(3):
            assert client.request("GET", "/echo/x").status == 200
        status = manager.wait_for("STATUS", timeout=5.0, when=lambda m: "READY" not in m)
        assert status["STATUS"] == (f"serving on 127.0.0.1:{port}: 1 connections,"
                                    " 3 requests served")
        client.close()

        server.send_signal(signal.SIGHUP)
        reloading = manager.wait_for("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert manager.wait_for("READY")["READY"] == "1"

        server.send_signal(signal.SIGTERM)
        assert manager.wait_for("STOPPING")["STOPPING"] == "1"
        assert server.wait() == 0
    finally:
        server.stop()
    assert all(set(m) <= {"READY", "STATUS", "WATCHDOG", "RELOADING", "MONOTONIC_USEC",
                          "STOPPING", "EXTEND_TIMEOUT_USEC"} for m in manager.messages)


def _unit_timeout_stop_s() -> float:
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "reactor.service").read_text()
    [value] = [line.split("=", 1)[1] for line in unit.splitlines()
               if line.startswith("TimeoutStopSec=")]
    return float(value)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_longer_than_the_units_timeout_extends_it(manager: Manager, tmp_path: Path,
                                                         workers: int) -> None:
    """systemd/reactor.service stops with TimeoutStopSec=35, then SIGKILLs; a configuration
    whose graceful stop may take longer (timeouts.drain_s + shutdown_s, e.g. the 5-10 s drain
    the README suggests behind a balancer, or a longer shutdown_s for slow uploads) was killed
    midway, requests cut and buffered access lines lost. STOPPING=1 now says how long the
    stop may take (EXTEND_TIMEOUT_USEC), from the one process and from a master alike."""
    shutdown_s = _unit_timeout_stop_s() + 5
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, server={"workers": workers},
        timeouts={"shutdown_s": shutdown_s, "drain_s": 0.2}))
    env = server_env(NOTIFY_SOCKET=str(manager.path))
    server = ServeProcess(["--config", str(config)], cwd=tmp_path, env=env)
    try:
        manager.wait_for("READY")
        server.send_signal(signal.SIGTERM)
        stopping = manager.wait_for("STOPPING")
        assert int(stopping["EXTEND_TIMEOUT_USEC"]) >= (0.2 + shutdown_s) * 1_000_000
        assert server.wait() == 0
    finally:
        server.stop()


def test_no_watchdog_pings_when_the_watchdog_is_for_another_pid(manager: Manager,
                                                               tmp_path: Path) -> None:
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path))
    env = server_env(NOTIFY_SOCKET=str(manager.path), WATCHDOG_USEC="100000", WATCHDOG_PID="1")
    server = ServeProcess(["--config", str(config)], cwd=tmp_path, env=env)
    try:
        manager.wait_for("READY")
        deadline = time.monotonic() + 0.5
        while (remaining := deadline - time.monotonic()) > 0:
            message = manager.receive(remaining)
            assert message is None or "WATCHDOG" not in message
    finally:
        server.stop()


ACTIVATOR = textwrap.dedent("""
    import os, socket, sys
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print(sock.getsockname()[1], flush=True)
    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)  # survives the exec (dup2(3, 3) alone would not clear CLOEXEC)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid
    os.execv(sys.executable, sys.argv[1:])
""")


def test_socket_activation_serves_the_passed_socket(tmp_path: Path) -> None:
    with socket.socket() as taken:  # server.listen names a port the server must not bind
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        config = write_config(tmp_path / "reactor.toml", base_config(
            tmp_path, server={"listen": [f"127.0.0.1:{busy}"]}))
        wrapper = tmp_path / "activate.py"
        wrapper.write_text(ACTIVATOR)
        argv = [sys.executable, str(wrapper), *reactor_argv("--config", str(config))]
        server = ServeProcess([], cwd=tmp_path, argv=argv)
        try:
            listening = server.wait_event("listening")
            assert server.proc.stdout is not None
            port = int(server.proc.stdout.readline())
            assert listening["port"] == port != busy
            assert listening["socket_activated"] is True
            assert server.wait_event("socket-activation")["sockets"] == 1
            response = get(port, "/echo/activated")
            assert (response.status, response.body) == (200, b"activated")
            server.send_signal(signal.SIGTERM)
            assert server.wait() == 0
        finally:
            server.stop()


def test_socket_activation_for_another_pid_binds_server_listen(tmp_path: Path) -> None:
    env = server_env(LISTEN_FDS="1", LISTEN_PID="1")
    server = ServeProcess(["--no-config", "--port", "0"], cwd=tmp_path, env=env)
    try:
        listening = server.wait_event("listening")
        assert "socket_activated" not in listening
        assert get(listening["port"], "/echo/bound").status == 200
        assert not server.events("socket-activation")
    finally:
        server.stop()


WRONG_ACTIVATOR = textwrap.dedent("""
    import os, socket, sys
    kind = sys.argv[1]
    if kind == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
    elif kind == "not-listening":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    else:  # "connected": what Accept=yes passes, one accepted connection
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.executable, sys.argv[2:])
""")


@pytest.mark.parametrize(("kind", "reason"), [
    ("udp", "fd 3 is a SOCK_DGRAM socket, not a stream socket"),
    ("not-listening", "fd 3 is a stream socket that is not listening"),
    ("connected", "fd 3 is a stream socket that is not listening"),
])
def test_socket_activation_of_a_socket_that_cannot_accept_is_one_line(
        tmp_path: Path, kind: str, reason: str) -> None:
    """A datagram socket would be announced and never serve; a connected or unlistened stream
    socket made accept() fail on every poll (a loop-error each time). Both are refused at
    start-up like a malformed LISTEN_FDS: one line, exit 1, nothing served."""
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path))
    wrapper = tmp_path / "activate.py"
    wrapper.write_text(WRONG_ACTIVATOR)
    argv = [sys.executable, str(wrapper), kind, *reactor_argv("--config", str(config))]
    server = ServeProcess([], cwd=tmp_path, argv=argv)
    try:
        assert server.wait() == 1
        assert len(server.stderr_text) == 1, server.stderr_text
        assert server.stderr_text[0].startswith(
            f"reactor: socket activation: LISTEN_FDS: {reason}"), server.stderr_text
    finally:
        server.stop()


SLOW_START_APP = '''
"""An app whose workers take SLOW_START_S to build while the file SLOW_MARKER exists."""
import os
import time
from reactor.app.application import App

class Slow(App):
    @property
    def compression(self):
        return self._compression

    @compression.setter
    def compression(self, value):  # set once by App() at import, again by each worker
        if hasattr(self, "_compression") and os.path.exists(os.environ["SLOW_MARKER"]):
            time.sleep(float(os.environ["SLOW_START_S"]))
        self._compression = value

app = Slow()
'''


def test_the_master_pings_the_watchdog_while_a_reloads_workers_start(
        manager: Manager, tmp_path: Path) -> None:
    """systemd keeps the watchdog armed through a reload, and the master waited for the new
    workers (up to READY_TIMEOUT_S, 15 s) without a WATCHDOG=1: with a WatchdogSec under
    that and an app slow to build, a reload got the service killed by its own watchdog."""
    (tmp_path / "slow.py").write_text(SLOW_START_APP)
    marker = tmp_path / "slow-now"
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, server={"workers": 2}, app={"native": "slow:app", "path": [str(tmp_path)]}))
    env = server_env(NOTIFY_SOCKET=str(manager.path), WATCHDOG_USEC="1000000",
                     SLOW_MARKER=str(marker), SLOW_START_S="2.0")
    server = ServeProcess(["--config", str(config)], cwd=tmp_path, env=env)
    try:
        manager.wait_for("READY")
        marker.touch()
        server.send_signal(signal.SIGHUP)
        manager.wait_for("RELOADING")
        started, pings = time.monotonic(), [time.monotonic()]
        while (message := manager.receive(5.0)) is not None and "READY" not in message:
            if "WATCHDOG" in message:
                pings.append(time.monotonic())
        assert message is not None, manager.messages
        assert time.monotonic() - started > 1.5  # the new workers took their 2 s
        gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
        assert gaps and max(gaps) < 1.0, gaps  # every 0.5 s: half of WATCHDOG_USEC
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()
