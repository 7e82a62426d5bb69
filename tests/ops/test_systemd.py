"""sd_notify over real unix datagram sockets; socket activation in a real child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.ops.systemd import Notifier, listen_fds
from tests.conftest import EVENT_WAIT_S

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


@pytest.fixture
def abstract_notify_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"reactor-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield sock, "@" + name
    sock.close()


def test_notify_sends_one_datagram_of_fields(notify_socket: tuple[socket.socket, str]) -> None:
    server, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    notifier.notify("READY=1", "STATUS=serving on 127.0.0.1:4221")
    assert server.recv(4096) == b"READY=1\nSTATUS=serving on 127.0.0.1:4221"
    notifier.close()


def test_abstract_namespace_address(abstract_notify_socket: tuple[socket.socket, str]) -> None:
    server, address = abstract_notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_helpers_send_exact_messages(notify_socket: tuple[socket.socket, str]) -> None:
    server, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.ready("serving on 127.0.0.1:4221")
    notifier.stopping()
    notifier.status("draining 3 connections")
    notifier.watchdog()
    assert server.recv(4096) == b"READY=1\nSTATUS=serving on 127.0.0.1:4221"
    assert server.recv(4096) == b"STOPPING=1"
    assert server.recv(4096) == b"STATUS=draining 3 connections"
    assert server.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_reloading_carries_monotonic_usec(notify_socket: tuple[socket.socket, str]) -> None:
    server, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = server.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    notifier.close()


def test_status_text_is_kept_on_one_line(notify_socket: tuple[socket.socket, str]) -> None:
    server, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.status("line one\nREADY=1")
    assert server.recv(4096) == b"STATUS=line one READY=1"
    with pytest.raises(ValueError):
        notifier.notify("READY=1\nSTATUS=x")
    notifier.close()


def test_socket_is_opened_once_and_reused(notify_socket: tuple[socket.socket, str]) -> None:
    server, address = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.watchdog()
    first = notifier._sock
    notifier.watchdog()
    assert notifier._sock is first
    assert first is not None and not first.getblocking()
    assert server.recv(4096) == server.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_no_op_without_notify_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.reloading()
    notifier.watchdog()
    assert notifier._sock is None
    assert notifier.watchdog_interval_s() is None


def test_delivery_problems_are_swallowed(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    notifier.ready()  # ENOENT
    assert notifier.dropped == 1


def test_full_receive_queue_never_blocks(notify_socket: tuple[socket.socket, str]) -> None:
    _server, address = notify_socket  # never read: its queue fills up
    notifier = Notifier({"NOTIFY_SOCKET": address})

    def send() -> None:
        for _ in range(5000):
            notifier.status("x" * 200)

    # A blocking send would wait forever on the full queue; a non-blocking one drops.
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(EVENT_WAIT_S)
    assert not sender.is_alive(), "status() blocked on the full notify queue"
    assert notifier.dropped > 0
    notifier.close()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(extra: dict[str, str], expected: float | None) -> None:
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    environ.update({key: value.format(pid=os.getpid()) for key, value in extra.items()})
    assert Notifier(environ).watchdog_interval_s() == expected


def test_listen_fds_not_activated() -> None:
    assert listen_fds({}, unset=False) == []
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert listen_fds(environ) == []
    assert environ == {}  # unset even when the fds are not ours, as sd_listen_fds(1) does


def test_listen_fds_rejects_bad_count() -> None:
    with pytest.raises(ValueError, match="LISTEN_FDS"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"})


# Runs in the child: emulate systemd, which sets LISTEN_PID after fork, then activate.
CHILD = textwrap.dedent(
    """
    import os, sys
    from reactor.ops.systemd import listen_fds
    os.environ["LISTEN_PID"] = str(os.getpid())
    sockets = listen_fds()
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ
    print(repr([(name, s.fileno(), s.getblocking(), s.get_inheritable()) for name, s in sockets]))
    sys.stdout.flush()
    name, listener = sockets[0]
    listener.setblocking(True)
    conn, _ = listener.accept()
    conn.sendall(b"hello " + conn.recv(100))
    conn.close()
    """
)


# Wrapper run before the child, like systemd between fork and exec: move the inherited fd to 3
# (dup2 clears FD_CLOEXEC, so it survives exec), close the original, exec the real program.
WRAPPER = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2]])"
)


def _activated(script: str, fd: int) -> list[str]:
    """argv that runs `script` with `fd` (passed via pass_fds) as fd 3."""
    return [sys.executable, "-c", WRAPPER, str(fd), script]


def test_listen_fds_in_activated_child() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="http", PYTHONPATH=str(REPO))
    fd = listener.fileno()
    child = subprocess.Popen(
        _activated(CHILD, fd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(fd,),
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline().decode()
        if not line:
            pytest.fail(child.stderr.read().decode())
        # name from LISTEN_FDNAMES, fd 3, non-blocking, close-on-exec
        assert line.strip() == "[('http', 3, False, False)]"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"world")
            client.shutdown(socket.SHUT_WR)
            assert client.recv(100) == b"hello world"
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.wait()
        listener.close()


def test_listen_fds_rejects_non_socket_fd() -> None:
    script = textwrap.dedent(
        """
        import os
        from reactor.ops.systemd import listen_fds
        os.environ["LISTEN_PID"] = str(os.getpid())
        try:
            listen_fds()
        except ValueError as exc:
            print(exc)
        """
    )
    read_end, write_end = os.pipe()
    env = dict(os.environ, LISTEN_FDS="1", PYTHONPATH=str(REPO))
    try:
        result = subprocess.run(
            _activated(script, read_end),
            env=env,
            capture_output=True,
            text=True,
            pass_fds=(read_end,),
            timeout=30,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.stdout.strip() == "LISTEN_FDS: fd 3 is not a socket", result.stderr
