"""A stop that outlasts `timeouts.shutdown_s` with an upload in flight leaves no temp file:
SIGTERM of one process, and SIGHUP of a master whose old worker held the upload.

The servers here write named `.upload-*` files (`named_uploads_argv`), the fallback where
O_TMPFILE is refused: an unnamed upload file goes with its process whatever stops it
(tests/app/test_newfile.py), a named one only if the stop removes it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.serverproc import (
    Client,
    ServeProcess,
    base_config,
    named_uploads_argv,
    read_json_lines,
    request_bytes,
    stop_gracefully,
    wait_until,
    write_config,
)
from tests.ops.test_workers import children

BODY_BYTES = 1_000_000


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        stop_gracefully(process)


def serve(started: list[ServeProcess], tmp_path: Path, files_dir: Path,
          **server: object) -> ServeProcess:
    # body_s far beyond shutdown_s: the stalled upload is cut by the stop, not by its timeout
    sections = base_config(tmp_path, files={"directory": str(files_dir)}, server=server,
                           timeouts={"shutdown_s": 1, "body_s": 60})
    config = write_config(tmp_path / "reactor.toml", sections)
    process = ServeProcess([], cwd=tmp_path, argv=named_uploads_argv("--config", str(config)))
    started.append(process)
    return process


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".upload-"))


def start_slow_upload(port: int, files_dir: Path, name: str = "slow") -> Client:
    """A PUT accepted (100 Continue: the temp file exists) with part of its body sent; the
    rest never comes."""
    client = Client(port)
    client.send(request_bytes("PUT", f"/files/{name}", headers={
        "Content-Length": str(BODY_BYTES), "Expect": "100-continue"}))
    assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
    client.send(b"x" * 65536)
    wait_until(lambda: temp_files(files_dir), what="the upload's temp file")
    return client


def wait_closed(client: Client) -> None:
    """Until the server drops the connection (FIN or reset)."""
    def closed() -> bool:
        try:
            return not client._fill()
        except OSError:
            return True
    wait_until(closed, what="the server to close the upload")


@pytest.mark.expect_log("shutdown-timeout")
def test_sigterm_past_shutdown_timeout_removes_the_upload_temp_file(
        started: list[ServeProcess], tmp_path: Path, files_dir: Path) -> None:
    server = serve(started, tmp_path, files_dir)
    client = start_slow_upload(server.port, files_dir)
    try:
        server.send_signal(signal.SIGTERM)
        server.wait_event("shutdown-timeout")
        assert server.wait() == 0
        assert server.events("stopped")
    finally:
        client.close()
    assert temp_files(files_dir) == []
    assert not (files_dir / "slow").exists()


@pytest.mark.expect_log("shutdown-timeout")
def test_sighup_with_workers_removes_the_old_workers_upload_temp_file(
        started: list[ServeProcess], tmp_path: Path, files_dir: Path) -> None:
    server = serve(started, tmp_path, files_dir, workers=2)
    port = server.port
    server.wait_event("workers-started")
    old_workers = children(server.proc.pid)
    assert len(old_workers) == 2
    client = start_slow_upload(port, files_dir)
    try:
        server.send_signal(signal.SIGHUP)
        server.wait_event("reloaded")
        wait_closed(client)
        wait_until(lambda: not old_workers & children(server.proc.pid),
                   what="the old workers to exit")
    finally:
        client.close()
    assert temp_files(files_dir) == []
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0


STUCK_APP = '''
import threading
from reactor import App, Response

app = App()
never = threading.Event()

@app.get("/stuck")
def stuck(request):
    never.wait()  # a handler that never returns
    return Response.text("unreachable")
'''


@pytest.mark.expect_log("shutdown-timeout")
def test_a_handler_stuck_in_the_pool_does_not_stretch_the_stop(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """timeouts.shutdown_s bounds the stop: the pool's threads got 5 s more after it (a
    systemd TimeoutStopSec sized from the setting would SIGKILL). The request the server
    gave up on is logged 503 (not 499: the client did not leave)."""
    (tmp_path / "stuckapp.py").write_text(STUCK_APP)
    sections = base_config(tmp_path, timeouts={"shutdown_s": 1},
                           app={"native": "stuckapp:app", "path": [str(tmp_path)]})
    process = ServeProcess(["--config", str(write_config(tmp_path / "reactor.toml", sections))],
                           cwd=tmp_path)
    started.append(process)
    client = Client(process.port)
    try:
        client.send(request_bytes("GET", "/stuck"))
        time.sleep(0.3)  # the handler is running in the pool
        stop_sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0
        # shutdown_s (1) + the pool's grace (0.5) + exiting; it was 1 + 5 + exiting
        assert time.monotonic() - stop_sent < 4.0
    finally:
        client.close()
    [line] = [x for x in read_json_lines(tmp_path / "access.log") if x.get("path") == "/stuck"]
    assert (line["status"], line["bytes_out"]) == (503, 0)


STUCK_FILES_APP = '''
import threading
from reactor import Response
from reactor.app.application import build_app

app = build_app(directory={directory!r})
never = threading.Event()

@app.get("/stuck")
def stuck(request):
    never.wait()  # a handler that never returns: it holds the pool's only thread
    return Response.text("unreachable")
'''


@pytest.mark.expect_log("shutdown-timeout")
def test_a_stop_past_its_deadline_with_the_pool_stuck_removes_the_upload_temp_files(
        started: list[ServeProcess], tmp_path: Path, files_dir: Path) -> None:
    """The aborts of the uploads cut at the deadline are pool jobs queued behind a handler
    that never returns; the pool's threads get only a short grace, then the process exits.
    Neither the abort of an idle upload nor that of one whose write is still queued may be
    lost with the queue: both temp files go (they stayed in the directory, forever)."""
    (tmp_path / "stuckfiles.py").write_text(STUCK_FILES_APP.format(directory=str(files_dir)))
    sections = base_config(tmp_path, server={"pool_threads": 1},
                           timeouts={"shutdown_s": 0.5, "body_s": 60},
                           app={"native": "stuckfiles:app", "path": [str(tmp_path)]})
    config = write_config(tmp_path / "reactor.toml", sections)
    process = ServeProcess([], cwd=tmp_path, argv=named_uploads_argv("--config", str(config)))
    started.append(process)
    idle = start_slow_upload(process.port, files_dir, "idle")  # nothing of it in the pool
    queued = start_slow_upload(process.port, files_dir, "queued")
    wait_until(lambda: len(temp_files(files_dir)) == 2, what="two temp files")
    stuck = Client(process.port)
    try:
        stuck.send(request_bytes("GET", "/stuck"))
        time.sleep(0.2)  # the pool's only thread is taken
        queued.send(b"y" * 65536)  # its write waits in the pool's queue
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        for client in (idle, queued, stuck):
            client.close()
    assert temp_files(files_dir) == []
