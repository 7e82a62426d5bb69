"""Uploads onto a full, read-only or forbidden file system, for real: a 1 MiB tmpfs, the same
remounted read-only, a 0555 directory under a server without CAP_DAC_OVERRIDE. Each gets a
clear status and short body, one error line naming the path and errno, no traceback, and
no temp file; an unwritable directory is also named by a warning at start-up.

Mounting needs root: without it (or without tmpfs) these tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TMPFS_BYTES, mount
from tests.ops.serverproc import (
    Client,
    Response,
    ServeProcess,
    base_config,
    request_bytes,
    server_env,
    write_config,
)


def serve(started: list[ServeProcess], tmp_path: Path, files: Path, *,
          argv: Callable[..., list[str]] | None = None, **extra: dict[str, object]
          ) -> ServeProcess:
    sections = base_config(tmp_path, files={"directory": str(files)}, **extra)
    sections["log"]["access"] = "off"
    config = write_config(tmp_path / "reactor.toml", sections)
    args = ["--config", str(config)]
    process = ServeProcess(args, cwd=tmp_path, argv=argv(*args) if argv else None)
    started.append(process)
    return process


def put(port: int, path: str, body: bytes) -> Response:
    """A PUT sent whole in the background of reading: the answer may come before the body
    is all sent (the server then closes), so the send may fail; the answer counts."""
    return put_or_post(port, "PUT", path, body)


def put_or_post(port: int, method: str, path: str, body: bytes) -> Response:
    client = Client(port)
    try:
        try:
            client.send(request_bytes(method, path, body))
        except OSError:
            pass
        return client.read_response()
    finally:
        client.close()


def error_lines(process: ServeProcess) -> list[dict[str, Any]]:
    return [line for line in process.lines if line.get("level") == "error"]


def no_traceback(process: ServeProcess) -> None:
    for line in process.lines:
        assert "exception" not in line and "Traceback" not in str(line), line


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".upload-")]


def stop(process: ServeProcess) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


@pytest.mark.expect_log("upload-failed")
@pytest.mark.parametrize("prefix", ["/files/", "/docs/"])
def test_disk_full_during_write_is_507_and_leaves_nothing(
        started: list[ServeProcess], tmp_path: Path, tmpfs: Path, prefix: str) -> None:
    """/files and a [static] document root with uploads share the upload code."""
    server = serve(started, tmp_path, tmpfs, limits={"max_body_bytes": 8 * TMPFS_BYTES},
                   static={"root": str(tmpfs), "prefix": "/docs", "uploads": True})
    port = server.port
    # fills the disk in write(), long before finish(): 3 MiB into 1 MiB
    response = put(port, f"{prefix}big", b"x" * (3 * TMPFS_BYTES))
    assert response.status == 507, response
    assert response.body == b"Insufficient Storage\n"
    assert temp_files(tmpfs) == []
    assert not (tmpfs / "big").exists()
    # the space came back with the temp file: a small upload still works
    client = Client(port)
    try:
        assert client.request("PUT", f"{prefix}small", b"ok").status == 201
    finally:
        client.close()
    assert (tmpfs / "small").read_bytes() == b"ok"
    stop(server)
    [line] = error_lines(server)
    assert line["event"] == "upload-failed"
    assert line["errno"] == "ENOSPC"
    assert line["path"] == str(tmpfs / "big")
    no_traceback(server)


@pytest.mark.expect_log("upload-failed")
def test_disk_full_is_answered_before_the_rest_of_the_body_is_sent(
        started: list[ServeProcess], tmp_path: Path, tmpfs: Path) -> None:
    """The 507 comes as soon as the disk says no, as nginx does: a client that sent 2 MiB of
    an announced 64 MiB gets it without sending the rest."""
    server = serve(started, tmp_path, tmpfs, limits={"max_body_bytes": 64 * TMPFS_BYTES})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"PUT /files/huge HTTP/1.1\r\nHost: a\r\n"
                     b"Content-Length: %d\r\n\r\n" % (64 * TMPFS_BYTES))
        sock.sendall(b"x" * (2 * TMPFS_BYTES))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 507 ") and b"Connection: close" in answer
    assert temp_files(tmpfs) == []
    stop(server)


@pytest.mark.expect_log("upload-failed", "delete-failed", "directory-not-writable")
def test_read_only_file_system_is_one_error_line_each_and_a_start_up_warning(
        started: list[ServeProcess], tmp_path: Path, tmpfs: Path) -> None:
    (tmpfs / "kept").write_bytes(b"kept")
    done = mount("-o", "remount,ro", str(tmpfs))
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    server = serve(started, tmp_path, tmpfs)
    port = server.port
    [warning] = [line for line in server.lines if line.get("event") == "directory-not-writable"]
    assert warning["level"] == "warning"
    assert warning["path"] == str(tmpfs)
    response = put(port, "/files/new", b"data")
    assert response.status == 500, response
    assert response.body.startswith(b"Internal Server Error\nrequest id: ")
    client = Client(port)
    try:
        assert client.request("DELETE", "/files/kept").status == 500
    finally:
        client.close()
    assert (tmpfs / "kept").read_bytes() == b"kept"
    stop(server)
    put_line, delete_line = error_lines(server)
    assert (put_line["event"], put_line["errno"]) == ("upload-failed", "EROFS")
    assert put_line["path"] == str(tmpfs / "new")
    assert (delete_line["event"], delete_line["errno"]) == ("delete-failed", "EROFS")
    assert delete_line["path"] == str(tmpfs / "kept")
    no_traceback(server)


def without_override(*args: str) -> list[str]:
    """`reactor serve ARGS` as a root that obeys permission bits: no CAP_DAC_OVERRIDE."""
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--",
            sys.executable, "-m", "reactor", "serve", *args]


@pytest.mark.expect_log("upload-failed", "directory-not-writable")
def test_permission_denied_is_403_with_one_error_line(
        started: list[ServeProcess], tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to run a server that permission bits stop")
    files = tmp_path / "files"
    files.mkdir()
    (files / "existing").write_bytes(b"old")
    files.chmod(0o555)  # readable, not writable, for the owner too
    server = serve(started, tmp_path, files, argv=without_override)
    port = server.port
    assert [line["path"] for line in server.lines
            if line.get("event") == "directory-not-writable"] == [str(files)]
    response = put(port, "/files/existing", b"new")
    assert response.status == 403, response
    assert response.body == b"Forbidden\n"
    assert (files / "existing").read_bytes() == b"old"
    assert temp_files(files) == []
    stop(server)
    [line] = error_lines(server)
    assert line["event"] == "upload-failed"
    assert line["errno"] == "EACCES"
    assert line["path"] == str(files / "existing")
    no_traceback(server)


BIG_BODY_APP = '''
from reactor import App, Response

app = App()

@app.post("/size")
def size(request):
    return Response.text(str(len(request.read())))
'''


@pytest.mark.expect_log("spool-failed")
def test_a_full_temporary_directory_while_spooling_a_body_is_507(
        started: list[ServeProcess], tmp_path: Path, tmpfs: Path) -> None:
    """A native route's body past `app.spool_bytes` goes to a temporary file: a full TMPDIR
    is a 507 and one line, as for uploads (it was a 500 with a traceback)."""
    (tmp_path / "bigbody.py").write_text(BIG_BODY_APP)
    sections = base_config(tmp_path, limits={"max_body_bytes": 8 * TMPFS_BYTES},
                           app={"native": "bigbody:app", "path": [str(tmp_path)]})
    config = write_config(tmp_path / "reactor.toml", sections)
    server = ServeProcess(["--config", str(config)], cwd=tmp_path,
                          env=server_env(TMPDIR=str(tmpfs)))
    started.append(server)
    response = put_or_post(server.port, "POST", "/size", b"x" * (3 * TMPFS_BYTES))
    assert (response.status, response.body) == (507, b"Insufficient Storage\n")
    assert list(tmpfs.iterdir()) == []  # the spool is an unnamed file: nothing stays
    client = Client(server.port)
    try:  # the space came back: a body that fits is spooled and read
        assert client.request("POST", "/size", b"y" * (TMPFS_BYTES // 2)).body == \
            str(TMPFS_BYTES // 2).encode()
    finally:
        client.close()
    stop(server)
    [line] = error_lines(server)
    assert (line["event"], line["errno"], line["path"]) == ("spool-failed", "ENOSPC",
                                                           "request body spool")
    no_traceback(server)
