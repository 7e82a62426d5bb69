"""Issue 9, defect 3: SIGHUP with several workers never drops a request a client sent.

Eight threads connect, send a `Connection: close` GET and read to EOF, while the master is
sent SIGHUP repeatedly (each HUP replaces every worker, whose graceful stop must answer what
its connections already sent). Every request must get a response.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

from tests.ops.serverproc import ServeProcess, base_config, write_config

CLIENTS = 8
RELOADS = 5
REQUEST = b"GET /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def test_reloads_under_connection_close_load_drop_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "reactor.toml",
                          base_config(tmp_path, server={"workers": 2}))
    process = ServeProcess(["--config", str(config)], cwd=tmp_path)
    stop = threading.Event()
    outcomes: list[tuple[int, int]] = []  # (answered, dropped) per thread
    lock = threading.Lock()

    def client() -> None:
        answered = dropped = 0
        while not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", process.port), timeout=10)
            except OSError:
                continue  # the listen queue itself is not the server's answer to judge
            with sock:
                sock.sendall(REQUEST)
                data = b""
                try:
                    while chunk := sock.recv(65536):
                        data += chunk
                except OSError:
                    pass
            if data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nx"):
                answered += 1
            else:
                dropped += 1
        with lock:
            outcomes.append((answered, dropped))

    try:
        process.wait_event("workers-started")
        threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for number in range(1, RELOADS + 1):
            time.sleep(0.5)
            process.proc.send_signal(signal.SIGHUP)
            process.wait_event("reloaded", count=number, timeout=30)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        stop.set()
        # A graceful stop: a SIGKILLed master would leave its workers holding the pipes.
        process.proc.send_signal(signal.SIGTERM)
        process.wait(30)
        process._reader.join(30)  # until workers replaced by the reloads have exited too
        process.stop()
    answered = sum(a for a, _ in outcomes)
    dropped = sum(d for _, d in outcomes)
    assert len(outcomes) == CLIENTS
    assert answered > 100, "the load did not run"
    assert dropped == 0, f"{dropped} of {answered + dropped} requests got no response"
