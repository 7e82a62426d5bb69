"""Out of file descriptors: every request that needs one is a 503 with `Retry-After: 1` and
one `resource-shortage` line naming the path and errno, never a 500 with a traceback; the
server serves normally once descriptors are free, and a refused upload leaves nothing.

A real server in this process, its fd table really full (`fdtable.fd_table_full`), real
files, uploads, a static mount, a native route answering `Response.file` and one whose large
body is spooled to a temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor import App, Request, Response
from reactor.app.application import build_app
from reactor.app.static import StaticMount
from tests.app.fdtable import fd_table_full
from tests.conftest import (
    RawClient,
    RawResponse,
    RunningServer,
    on_loop,
    read_log,
    request_bytes,
    start_server,
    wait_for_log,
)

SPOOLED = b"x" * (2 * 1024 * 1024)  # past the app's 1 MiB: spooled to a temporary file


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Path, Path]]:
    """/files on `files`, a mount /s on `www` with uploads and listings, two native routes."""
    files = tmp_path / "files"
    www = tmp_path / "www"
    files.mkdir()
    www.mkdir()
    (files / "exist.txt").write_bytes(b"exists\n")
    (www / "a.txt").write_bytes(b"a\n")
    (tmp_path / "download.bin").write_bytes(b"d" * 100)
    app = build_app(directory=str(files),
                    mounts=[StaticMount("/s", www, uploads=True, listing=True, index=None)])

    @app.get("/download")
    def download(request: Request) -> Response:
        return Response.file(tmp_path / "download.bin")

    @app.post("/size")
    def size(request: Request) -> str:
        return str(len(request.read()))

    running = start_server(tmp_path)
    app.on_error = running.server.app_error
    on_loop(running, setattr, running.server.http, "app", app)
    yield running, files, www
    running.stop()


# (method, target, body, what the error line's path names)
REQUESTS = [
    ("GET", "/files/exist.txt", b"", "files/exist.txt"),
    ("POST", "/files/up1", b"data", "files"),  # the directory the upload could not open
    ("PUT", "/s/put1.txt", b"data", "www"),
    ("GET", "/s/a.txt", b"", "www/a.txt"),
    ("GET", "/s/", b"", "www"),
    ("GET", "/download", b"", "download.bin"),
    ("POST", "/size", SPOOLED, "request body spool"),
]


def ask(client: RawClient, method: str, target: str, body: bytes) -> RawResponse:
    try:
        client.send(request_bytes(method, target, body=body))
    except OSError:
        pass  # refused before the whole body was read: the answer is what counts
    return client.read_response()


def errors(running: RunningServer) -> list[dict]:
    return [line for line in read_log(running.error_log) if line.get("level") == "error"]


@pytest.mark.expect_log("resource-shortage")
def test_out_of_fds_every_request_is_a_503_with_one_line_and_nothing_left(
        served: tuple[RunningServer, Path, Path], tmp_path: Path) -> None:
    running, files, www = served
    # one connection each, opened while there are descriptors
    clients = [RawClient.to(running, timeout=10) for _ in REQUESTS]
    try:
        for client in clients:  # accepted by the server (not just by the kernel) by now
            assert ask(client, "GET", "/files/exist.txt", b"").status == 200
        with fd_table_full():
            answers = [ask(client, method, target, body)
                       for client, (method, target, body, _) in zip(clients, REQUESTS,
                                                                    strict=True)]
        for (method, target, _, _), answer in zip(REQUESTS, answers, strict=True):
            assert answer.status == 503, (method, target, answer)
            assert answer.header("Retry-After") == "1", (method, target, answer)
            assert answer.body == b"Service Unavailable\n", (method, target, answer)
        # nothing of a refused upload is left
        assert sorted(os.listdir(files)) == ["exist.txt"]
        assert sorted(os.listdir(www)) == ["a.txt"]
        # one line per request, naming path and errno, without a traceback
        lines = wait_for_log(running.error_log, lambda line: line.get("level") == "error",
                             count=len(REQUESTS))
        assert len(lines) == len(REQUESTS), lines
        for line in lines:
            assert line["event"] == "resource-shortage", line
            assert line["errno"] == "EMFILE", line
            assert "exception" not in line and "Traceback" not in str(line), line
        named = {(line["method"], line["target"]): line["path"] for line in lines}
        for method, target, _, path in REQUESTS:
            logged = named[(method, target)]
            assert logged == path if path == "request body spool" else (
                logged == str(tmp_path / path)), (method, target, logged)
    finally:
        for client in clients:
            client.close()
    # descriptors free again: everything works, on fresh connections
    for method, target, body, _ in REQUESTS:
        with RawClient.to(running, timeout=10) as client:
            answer = ask(client, method, target, body)
            assert answer.status in (200, 201), (method, target, answer)
    assert (files / "up1").read_bytes() == b"data"
    assert (www / "put1.txt").read_bytes() == b"data"
    assert len(errors(running)) == len(REQUESTS)


def test_a_genuine_fault_is_still_a_500_with_its_traceback(tmp_path: Path) -> None:
    """Only a shortage is answered 503: any other OSError stays a logged fault."""
    from tests.conftest import expect_log, fetch

    app = App()

    @app.get("/io")
    def broken(request: Request) -> Response:
        raise OSError(5, "Input/output error", "/dev/sdz")

    running = start_server(tmp_path)
    try:
        app.on_error = running.server.app_error
        on_loop(running, setattr, running.server.http, "app", app)
        with expect_log(running, "handler-error", path="/io"):
            assert fetch(running, "GET", "/io")[0] == 500
        [line] = errors(running)
        assert "exception" in line
    finally:
        running.stop()


@pytest.mark.expect_log("resource-shortage")
def test_a_wsgi_apps_spooled_body_out_of_fds_is_a_503(tmp_path: Path) -> None:
    """WSGI bodies are spooled by the same code: the same 503 and line."""
    from typing import Any

    from reactor.app.wsgi import WsgiApp

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(body)).encode()]

    running = start_server(tmp_path)
    try:
        host = WsgiApp(app, on_error=running.server.app_error)
        on_loop(running, setattr, running.server.http, "app", host)
        with RawClient.to(running, timeout=10) as client:
            assert ask(client, "POST", "/up", b"").status == 200  # accepted, not just queued
            with fd_table_full():
                answer = ask(client, "POST", "/up", SPOOLED)
            assert answer.status == 503 and answer.header("Retry-After") == "1", answer
        [line] = wait_for_log(running.error_log, lambda line: line.get("level") == "error")
        assert line["event"] == "resource-shortage" and line["errno"] == "EMFILE", line
        assert line["path"] == "request body spool" and "exception" not in line, line
        with RawClient.to(running, timeout=10) as client:
            answer = ask(client, "POST", "/up", SPOOLED)
            assert answer.status == 200 and answer.body == str(len(SPOOLED)).encode()
    finally:
        running.stop()
