"""The open-file cache within the process's fd limit: a real `reactor serve` whose
RLIMIT_NOFILE is 256 (as under `ulimit -n 256`), real files, real keep-alive clients.

Each cache holds at most min(256, limit // 16) fds, and adds none while the process is
short of fds, so serving many different files never takes the descriptors connections and
requests need (it took all of them: 243 answers, then 500s and an accept pause).
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.ops.serverproc import (
    Client,
    ServeProcess,
    base_config,
    limited_argv,
    wait_until,
    write_config,
)

FD_LIMIT = 256
FILES = 300



def serve(tmp_path: Path) -> tuple[ServeProcess, Path]:
    www = tmp_path / "www"
    www.mkdir()
    for number in range(FILES):
        (www / f"f{number}.txt").write_bytes(b"%d\n" % number)
    sections = base_config(tmp_path, static={"root": str(www), "prefix": "/s"})
    sections["log"]["access"] = "off"
    config = write_config(tmp_path / "reactor.toml", sections)
    return ServeProcess([], cwd=tmp_path, argv=limited_argv(FD_LIMIT, "--config", str(config))), www


def open_fds(process: ServeProcess) -> int:
    return len(os.listdir(f"/proc/{process.proc.pid}/fd"))


def fetch_all(client: Client, count: int = FILES) -> list[int]:
    statuses = []
    for number in range(count):
        response = client.request("GET", f"/s/f{number}.txt")
        assert response.status != 200 or response.body == b"%d\n" % number
        statuses.append(response.status)
    return statuses


def stop(process: ServeProcess) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


def test_the_cache_of_a_mount_holds_at_most_a_sixteenth_of_the_fd_limit(
        tmp_path: Path) -> None:
    process, _www = serve(tmp_path)
    try:
        client = Client(process.port)
        try:
            assert client.request("GET", "/echo/warm").status == 200
            before = open_fds(process)
            statuses = fetch_all(client)
            assert statuses == [200] * FILES, {s: statuses.count(s) for s in set(statuses)}
            # the entries the cache holds now, and nothing else added
            assert open_fds(process) <= before + FD_LIMIT // 16
        finally:
            client.close()
        stop(process)
    finally:
        process.stop()
    from reactor.app.static.filecache import default_max_entries

    assert default_max_entries(1024) == 64 and default_max_entries(1 << 20) == 256


def test_no_entries_while_the_process_is_short_of_fds(tmp_path: Path) -> None:
    """Keep-alive connections fill the table to a few free slots: each file needs one of
    them for a moment, and the cache, which would keep them, takes none."""
    process, _www = serve(tmp_path)
    clients: list[socket.socket] = []
    try:
        port = process.port
        client = Client(port)
        try:
            assert client.request("GET", "/echo/warm").status == 200
            free = 6
            while (now := open_fds(process)) < FD_LIMIT - free:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                # accepted by the server, not just queued by the kernel
                wait_until(lambda now=now: open_fds(process) > now, what="the accept")
            held = open_fds(process)
            statuses = fetch_all(client, 50)
            assert statuses == [200] * 50, {s: statuses.count(s) for s in set(statuses)}
            assert open_fds(process) <= held
        finally:
            client.close()
        for sock in clients:
            sock.close()
        clients.clear()
        stop(process)
    finally:
        for sock in clients:
            sock.close()
        process.stop()
