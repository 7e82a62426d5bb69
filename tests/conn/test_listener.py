"""Out of file descriptors: the listener backs off, says so in the error log (once, not per
failed accept), and serves again once descriptors are free. A real `reactor serve` with a
64-descriptor limit and 100 real clients."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from reactor.conn.listener import Listener, bind_tcp
from reactor.loop import EventLoop
from tests.ops.serverproc import (
    Response,
    ServeProcess,
    base_config,
    get,
    limited_argv,
    wait_until,
    write_config,
)

FD_LIMIT = 64
CLIENTS = 100



@pytest.mark.expect_log("accept-paused")
def test_descriptor_exhaustion_is_logged_once_and_the_server_recovers(tmp_path: Path) -> None:
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path))
    process = ServeProcess([], cwd=tmp_path, argv=limited_argv(FD_LIMIT, "--config", str(config)))
    clients: list[socket.socket] = []
    try:
        port = process.port
        for _ in range(CLIENTS):  # the kernel completes each handshake; accept() fails
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        paused = process.wait_event("accept-paused")
        assert paused["level"] == "warning"
        assert paused["errno"] == "EMFILE"
        assert paused["open_files_limit"] == FD_LIMIT
        assert paused["backoff_s"] > 0
        time.sleep(1.0)  # ~10 back-off periods still out of descriptors
        assert len(process.events("accept-paused")) <= 2, process.events("accept-paused")
        for client in clients:
            client.close()
        clients.clear()
        assert wait_until(lambda: _answers(port)).body == b"back"
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        for client in clients:
            client.close()
        process.stop()


def _answers(port: int) -> Response | None:
    try:
        return get(port, "/echo/back")
    except (OSError, AssertionError):
        return None


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_accepted_sockets_are_non_blocking_and_tcp_ones_have_nagle_off(
        family: str, tmp_path: Path) -> None:
    # On Linux the listener sets TCP_NODELAY on itself once and each accepted socket
    # inherits it (no setsockopt per connection); elsewhere it is set on each one.
    loop = EventLoop(pool_threads=1)
    accepted: list[socket.socket] = []
    if family == "tcp":
        listening = bind_tcp("127.0.0.1", 0)
        address: object = listening.getsockname()
        client = socket.socket()
    else:
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(tmp_path / "s"))
        listening.listen()
        listening.setblocking(False)
        address = str(tmp_path / "s")
        client = socket.socket(socket.AF_UNIX)
    listener = Listener(loop, listening, lambda sock, _addr: (accepted.append(sock),
                                                              loop.stop()))
    try:
        listener.start()
        client.connect(address)  # type: ignore[arg-type]
        guard = loop.call_later(10.0, loop.stop)
        loop.run_forever()
        guard.cancel()
        assert len(accepted) == 1
        sock = accepted[0]
        assert sock.gettimeout() == 0.0 and not sock.getblocking()
        if family == "tcp":
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            if sys.platform == "linux":
                assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for sock in accepted:
            sock.close()
        client.close()
        listener.close()
        loop.close()
