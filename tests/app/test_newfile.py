"""Upload files that leave nothing behind (reactor/app/newfile.py): a SIGKILLed server, for
real, on /files and on a [static] mount with uploads; create-only writes racing; replaces
that readers never see half done; and the fallbacks (named files, a failing link step)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.app import newfile
from reactor.app.newfile import NewFile
from tests.conftest import (
    RawClient,
    RunningServer,
    fetch,
    request_bytes,
    start_server,
    upload_files,
    wait_until,
)
from tests.ops.serverproc import (
    Client,
    ServeProcess,
    base_config,
    named_uploads_argv,
    write_config,
)
from tests.ops.serverproc import wait_until as wait_for

needs_unnamed = pytest.mark.skipif(not newfile.UNNAMED, reason="no O_TMPFILE or /proc/self/fd")



@pytest.fixture
def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _serve(started: list[ServeProcess], tmp_path: Path, *, named: bool = False,
           **sections: dict[str, object]) -> ServeProcess:
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, timeouts={"body_s": 60}, **sections))
    args = ("--config", str(config))
    process = ServeProcess(args, cwd=tmp_path, argv=named_uploads_argv(*args) if named else None)
    started.append(process)
    return process


def _kill_mid_upload(process: ServeProcess, method: str, target: str, directory: Path) -> None:
    """A 10 MB upload with 300 KB of it sent, its file open in the server; then SIGKILL."""
    client = Client(process.port)
    try:
        client.send(request_bytes(method, target, headers={"Content-Length": "10000000"})
                    + b"x" * 300_000)
        wait_for(lambda: upload_files(directory, process.proc.pid), what="the upload's file")
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    finally:
        client.close()


# ---- SIGKILL mid-upload -----------------------------------------------------------------------


@needs_unnamed
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_sigkill_mid_upload_to_files_leaves_no_file(started: list[ServeProcess],
                                                     tmp_path: Path, files_dir: Path,
                                                     method: str) -> None:
    process = _serve(started, tmp_path, files={"directory": str(files_dir)})
    _kill_mid_upload(process, method, "/files/big", files_dir)
    assert os.listdir(files_dir) == []  # was: .upload-XXXXXXXX, forever


@needs_unnamed
def test_sigkill_mid_put_on_a_static_mount_leaves_no_file(started: list[ServeProcess],
                                                          tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "sub" / "keep.txt").write_bytes(b"old")
    process = _serve(started, tmp_path, static={"root": str(www), "uploads": True})
    _kill_mid_upload(process, "PUT", "/sub/keep.txt", www / "sub")
    assert os.listdir(www / "sub") == ["keep.txt"]
    assert (www / "sub" / "keep.txt").read_bytes() == b"old"


def test_sigkill_with_named_upload_files_leaves_the_temp_file(started: list[ServeProcess],
                                                              tmp_path: Path,
                                                              files_dir: Path) -> None:
    """The fallback, where O_TMPFILE is refused, is what every upload was before: its
    `.upload-*` file survives a SIGKILL (the README says so)."""
    process = _serve(started, tmp_path, named=True, files={"directory": str(files_dir)})
    _kill_mid_upload(process, "PUT", "/files/big", files_dir)
    [left] = os.listdir(files_dir)
    assert left.startswith(".upload-")


# ---- create-only races, replaces, modes -------------------------------------------------------


@pytest.fixture(params=["files", "static"])
def new_name(request: pytest.FixtureRequest, tmp_path: Path
             ) -> Iterator[tuple[RunningServer, Path, str]]:
    """(server, directory, target) for a write of a new name: POST/PUT /files/new.bin, or
    PUT /new.bin on a [static] mount with uploads."""
    directory = tmp_path / "dir"
    directory.mkdir()
    if request.param == "files":
        server = start_server(tmp_path, files={"directory": directory})
    else:
        server = start_server(tmp_path, static={"root": directory, "uploads": True})
    try:
        yield server, directory, ("/files/new.bin" if request.param == "files" else "/new.bin")
    finally:
        server.stop()


def test_racing_create_only_writes_one_201_one_412_winner_whole(
        new_name: tuple[RunningServer, Path, str], upload_kind: str) -> None:
    """Two `If-None-Match: *` writes of one new name, both past their start-time check
    (both files open), then both completed: exactly one 201 and one 412, and the file is
    the winner's body, whole."""
    server, directory, target = new_name
    bodies = [b"A" * 200_000, b"B" * 200_001]
    clients = [RawClient.to(server) for _ in bodies]
    try:
        for client, body in zip(clients, bodies, strict=True):
            client.send(request_bytes("PUT", target, {
                "Content-Length": str(len(body)), "If-None-Match": "*"}) + body[:-1])
        assert wait_until(lambda: len(upload_files(directory)) == 2)
        for client, body in zip(clients, bodies, strict=True):
            client.send(body[-1:])
        statuses = sorted(client.read_response().status for client in clients)
    finally:
        for client in clients:
            client.close()
    assert statuses == [201, 412]
    assert (directory / "new.bin").read_bytes() in bodies
    assert os.listdir(directory) == ["new.bin"]


def test_create_only_publish_is_atomic_between_two_new_files(tmp_path: Path,
                                                             upload_kind: str) -> None:
    """Past every check, the link itself decides: the second creator gets False and the
    name keeps the first's bytes."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first, second = NewFile(fd), NewFile(fd)
        assert first.unnamed == second.unnamed == (upload_kind == "unnamed")
        first.write(b"first")
        second.write(b"second")
        assert first.publish("name", create_only=True)
        assert not second.publish("name", create_only=True)
        second.discard()
    finally:
        os.close(fd)
    assert (tmp_path / "name").read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["name"]


def test_readers_during_replaces_see_the_old_or_the_new_file_whole(
        running_server, files_dir: Path, upload_kind: str) -> None:
    bodies = [bytes([65 + i]) * 400_000 for i in range(6)]
    path = files_dir / "doc"
    path.write_bytes(bodies[0])
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for body in bodies[1:]:
            assert fetch(running_server, "PUT", "/files/doc", body)[0] == 204
    finally:
        done.set()
        reader.join(10)
    assert seen <= set(bodies)
    assert path.read_bytes() == bodies[-1]
    assert os.listdir(files_dir) == ["doc"]


def test_an_upload_file_has_mode_0644_less_umask(running_server, files_dir: Path,
                                                 upload_kind: str, umask: int) -> None:
    for method, status in (("POST", 201), ("PUT", 204)):
        assert fetch(running_server, method, "/files/doc", b"x")[0] == status
        assert (files_dir / "doc").stat().st_mode & 0o777 == 0o644 & ~umask


# ---- where O_TMPFILE is refused: a named file ----------------------------------------------


@needs_unnamed
def test_a_file_system_refusing_o_tmpfile_is_told_apart_from_a_failure() -> None:
    """devpts refuses O_TMPFILE for real (EOPNOTSUPP): "none here", not an error. (No file
    system here both refuses it and takes named files; the named fallback itself runs under
    `upload_kind` "named", the module switch.)"""
    if not os.path.isdir("/dev/pts") or os.geteuid() != 0:
        pytest.skip("needs /dev/pts and root (its permission check comes first)")
    fd = os.open("/dev/pts", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert newfile._open_unnamed(fd) == -1
    finally:
        os.close(fd)


# ---- the link step failing: the body is copied into a named file, never lost ------------------


@needs_unnamed
@pytest.mark.parametrize(("headers", "status"), [({}, 201), ({"If-None-Match": "*"}, 201)])
def test_a_failing_link_step_still_puts_the_whole_body_in_place(
        running_server, files_dir: Path, monkeypatch: pytest.MonkeyPatch, umask: int,
        headers: dict[str, str], status: int) -> None:
    monkeypatch.setattr(newfile, "_PROC_FD", "/nonexistent/fd/")  # linkat: ENOENT
    body = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy piece
    assert fetch(running_server, "PUT", "/files/doc", body, headers)[0] == status
    assert (files_dir / "doc").read_bytes() == body
    assert (files_dir / "doc").stat().st_mode & 0o777 == 0o644 & ~umask
    assert os.listdir(files_dir) == ["doc"]
    # and a create-only write of a name that exists by then is still a 412
    assert fetch(running_server, "PUT", "/files/doc", b"x", {"If-None-Match": "*"})[0] == 412
    assert (files_dir / "doc").read_bytes() == body
    assert os.listdir(files_dir) == ["doc"]


# ---- the directory removed while the body arrives ---------------------------------------------


@pytest.mark.parametrize("where", ["files", "static"])
def test_a_directory_removed_mid_upload_is_a_409_not_a_traceback(
        tmp_path: Path, upload_kind: str, where: str) -> None:
    """An unnamed upload file does not keep its directory from being removed (`rmdir`
    succeeds); a named one goes with `rm -r`. Either way the body has nowhere to go: 409,
    as for a PUT whose parent is missing (was: a 500 and a traceback)."""
    root = tmp_path / "root"
    directory = root / "sub"
    directory.mkdir(parents=True)
    if where == "files":
        server, target = start_server(tmp_path, files={"directory": directory}), "/files/doc"
    else:
        server = start_server(tmp_path, static={"root": root, "uploads": True})
        target = "/sub/doc"
    try:
        with RawClient.to(server) as client:
            client.send(request_bytes("PUT", target, {"Content-Length": "200000"})
                        + b"x" * 100_000)
            assert wait_until(lambda: upload_files(directory))
            shutil.rmtree(directory)
            client.send(b"y" * 100_000)
            response = client.read_response()
        assert response.status == 409, response
        assert response.body == b"Conflict: the parent directory does not exist\n"
    finally:
        server.stop()
    assert os.listdir(root) == []


@pytest.mark.parametrize("where", ["files", "static"])
def test_an_upload_to_a_served_directory_that_is_gone_is_a_409_not_a_traceback(
        tmp_path: Path, where: str) -> None:
    """The served directory (the /files directory, a mount's root) removed before the
    request: 409 as for any missing parent, no traceback (was: /files a 500 with a
    `handler-error` traceback); a GET of it stays a 404."""
    root = tmp_path / "root"
    root.mkdir()
    if where == "files":
        server, target = start_server(tmp_path, files={"directory": root}), "/files/doc"
    else:
        server, target = start_server(tmp_path, static={"root": root, "uploads": True}), "/doc"
    try:
        with RawClient.to(server) as client:
            client.send(request_bytes("GET", target, {}))  # served: the mount is built
            assert client.read_response().status == 404
            root.rmdir()
            client.send(request_bytes("PUT", target, {"Content-Length": "3"}) + b"abc")
            response = client.read_response()
            assert response.status == 409, response
            assert response.body == b"Conflict: the parent directory does not exist\n"
            client.send(request_bytes("GET", target, {}))
            assert client.read_response().status == 404
    finally:
        server.stop()
    assert not root.exists()
