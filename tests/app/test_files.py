"""`GET|POST /files/{name}`: serving, sendfile, atomic uploads, and never a byte outside."""

from __future__ import annotations

import gzip
import os
import socket
import stat
import struct
import time
import urllib.parse

import pytest

from tests.conftest import (
    RawClient,
    fetch,
    on_loop,
    request_bytes,
    start_server,
    upload_files,
    wait_for_log,
    wait_until,
)

SECRET = b"TOP-SECRET: never served"
SMALL_FILE_BYTES = 64 * 1024




def sendfile_bytes(running) -> list[int]:  # type: ignore[no-untyped-def]
    """`sendfile_bytes` of every open connection's transport (read on the loop thread)."""
    return on_loop(running, lambda: [transport.sendfile_bytes
                                     for transport in running.server.http.connections])


@pytest.fixture
def secret(tmp_path):  # type: ignore[no-untyped-def]
    """A real file outside the files directory."""
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


# ---- GET ---------------------------------------------------------------------------------------

def test_get_small_file(running_server, files_dir):
    data = bytes(range(256)) * 10
    (files_dir / "small.bin").write_bytes(data)
    status, headers, body = fetch(running_server, "GET", "/files/small.bin")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Length"] == str(len(data))
    assert body == data


def test_get_missing_file_is_404(running_server):
    status, _, body = fetch(running_server, "GET", "/files/nope.txt")
    assert status == 404
    assert body.startswith(b"Not Found")


def test_get_a_directory_is_404(running_server, files_dir):
    (files_dir / "subdir").mkdir()
    assert fetch(running_server, "GET", "/files/subdir")[0] == 404


def test_get_empty_file(running_server, files_dir):
    (files_dir / "empty").write_bytes(b"")
    status, headers, body = fetch(running_server, "GET", "/files/empty")
    assert (status, headers["Content-Length"], body) == (200, "0", b"")


def test_get_percent_encoded_name(running_server, files_dir):
    (files_dir / "with space é.txt").write_bytes(b"spaced")
    target = "/files/" + urllib.parse.quote("with space é.txt")
    assert fetch(running_server, "GET", target)[2] == b"spaced"


@pytest.mark.parametrize(("size", "via_sendfile"), [
    (SMALL_FILE_BYTES, False), (SMALL_FILE_BYTES + 1, True), (3 * 1024 * 1024 + 7, True)])
def test_large_files_go_out_with_sendfile(running_server, files_dir, size, via_sendfile):
    data = os.urandom(size)
    (files_dir / "blob").write_bytes(data)
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/files/blob", {"Accept-Encoding": "gzip"}))
        response = client.read_response()
        assert response.status == 200
        assert response.header("content-encoding") is None  # octet-stream: not compressed
        assert response.body == data  # byte-exact
        assert sendfile_bytes(running_server) == [size if via_sendfile else 0]


def test_head_of_a_large_file_sends_no_body(running_server, files_dir):
    (files_dir / "blob").write_bytes(b"z" * 200_000)
    with RawClient.to(running_server) as client:
        client.send(request_bytes("HEAD", "/files/blob"))
        head = client.read_response(head=True)
        assert head.status == 200 and head.header("content-length") == "200000"
        client.send(request_bytes("GET", "/echo/next"))
        assert client.read_response().body == b"next"  # no stray body bytes in between
        assert sendfile_bytes(running_server) == [0]


@pytest.mark.expect_log({"event": "files-disabled", "level": "warning"})
def test_files_without_a_directory_are_404(tmp_path):
    running = start_server(tmp_path)  # no files.directory
    try:
        assert fetch(running, "GET", "/files/anything")[0] == 404
        assert fetch(running, "POST", "/files/anything", b"data")[0] == 404
        assert fetch(running, "GET", "/echo/ok")[2] == b"ok"
    finally:
        running.stop()


# ---- POST --------------------------------------------------------------------------------------

def test_post_writes_the_file_and_answers_201(running_server, files_dir):
    data = os.urandom(100_000)
    status, headers, body = fetch(running_server, "POST", "/files/upload.bin", data)
    assert status == 201
    assert body == b"" and headers["Content-Length"] == "0"
    assert (files_dir / "upload.bin").read_bytes() == data
    assert sorted(p.name for p in files_dir.iterdir()) == ["upload.bin"]  # no temp left


def test_an_uploaded_file_mode_follows_the_process_umask_of_the_moment(running_server,
                                                                       files_dir):
    # 0644 less the umask in force at the upload (daemon.umask, or one the app set later);
    # reading it must not change it
    previous = os.umask(0o027)
    try:
        assert fetch(running_server, "POST", "/files/a.bin", b"a")[0] == 201
        assert stat.S_IMODE((files_dir / "a.bin").stat().st_mode) == 0o640
        os.umask(0o077)
        assert fetch(running_server, "POST", "/files/b.bin", b"b")[0] == 201
        assert stat.S_IMODE((files_dir / "b.bin").stat().st_mode) == 0o600
        assert os.umask(0o077) == 0o077
    finally:
        os.umask(previous)


def test_post_replaces_an_existing_file(running_server, files_dir):
    (files_dir / "doc.txt").write_bytes(b"old content that is longer")
    assert fetch(running_server, "POST", "/files/doc.txt", b"new")[0] == 201
    assert (files_dir / "doc.txt").read_bytes() == b"new"
    assert sorted(p.name for p in files_dir.iterdir()) == ["doc.txt"]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_write_of_a_range_is_400_and_the_file_kept(running_server, files_dir, method):
    (files_dir / "doc.txt").write_bytes(b"whole content")
    status, _, body = fetch(running_server, method, "/files/doc.txt", b"xx",
                            {"Content-Range": "bytes 0-1/13"})
    assert status == 400 and b"Content-Range" in body
    assert (files_dir / "doc.txt").read_bytes() == b"whole content"
    assert sorted(p.name for p in files_dir.iterdir()) == ["doc.txt"]


def test_post_empty_body_creates_an_empty_file(running_server, files_dir):
    assert fetch(running_server, "POST", "/files/zero", b"",
                 {"Content-Length": "0"})[0] == 201
    assert (files_dir / "zero").read_bytes() == b""


def test_post_then_get_round_trip(running_server, files_dir):
    data = b"round trip \x00\xff"
    assert fetch(running_server, "POST", "/files/rt", data)[0] == 201
    assert fetch(running_server, "GET", "/files/rt")[2] == data


def test_post_onto_a_directory_is_refused(running_server, files_dir):
    (files_dir / "adir").mkdir()
    status = fetch(running_server, "POST", "/files/adir", b"data")[0]
    assert status == 409
    assert (files_dir / "adir").is_dir()
    assert sorted(p.name for p in files_dir.iterdir()) == ["adir"]


@pytest.mark.parametrize("body", [
    pytest.param(request_bytes("POST", "/files/aborted", {"Content-Length": "100000"})
                 + b"x" * 50_000, id="content-length"),
    pytest.param(request_bytes("POST", "/files/aborted", {"Transfer-Encoding": "chunked"})
                 + b"1000\r\n" + b"y" * 4096 + b"\r\n800\r\nyyy", id="chunked"),
])
def test_aborted_upload_leaves_nothing_and_the_server_keeps_serving(running_server,
                                                                    files_dir, body):
    with RawClient.to(running_server) as bystander:
        bystander.send(request_bytes("GET", "/echo/before"))
        assert bystander.read_response().body == b"before"
        with RawClient.to(running_server) as uploader:
            uploader.send(body)
        # the uploader is gone; the log line proves the server saw the abort
        line = wait_for_log(running_server.access_log, lambda x: x["event"] == "rejected")[0]
        assert (line["status"], line["reason"]) == (499, "client-abort")
        bystander.send(request_bytes("GET", "/echo/after"))
        assert bystander.read_response().body == b"after"
    # an aborted streamed upload's file is closed (and removed, if named) by a pool job
    assert wait_until(lambda: upload_files(files_dir) == [] and not any(files_dir.iterdir()))
    assert fetch(running_server, "GET", "/files/aborted")[0] == 404


def test_uploads_can_be_disabled(tmp_path, files_dir):
    running = start_server(tmp_path, files={"directory": files_dir, "uploads": False})
    try:
        status, headers, _ = fetch(running, "POST", "/files/new", b"data")
        assert status == 405
        assert "POST" not in headers["Allow"]
        # an aborted streamed upload's file is closed (and removed, if named) by a pool job
        assert wait_until(lambda: upload_files(files_dir) == [] and not any(files_dir.iterdir()))
    finally:
        running.stop()


# ---- confinement -------------------------------------------------------------------------------

def escape_targets(secret) -> list[str]:  # type: ignore[no-untyped-def]
    quoted_abs = urllib.parse.quote(str(secret), safe="")
    return [
        "/files/..",
        "/files/%2e%2e",
        "/files/%2E%2E",
        "/files/../secret.txt",
        "/files/..%2Fsecret.txt",
        "/files/..%2fsecret.txt",
        "/files/%2e%2e%2fsecret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/..%5Csecret.txt",
        "/files/" + quoted_abs,  # an absolute path, slashes encoded
        "/files/" + str(secret),  # an absolute path, slashes raw
        "/files//" + str(secret).lstrip("/"),
        "/files/secret.txt%00",
        "/files/%00",
        "/files/link%00.txt",
        "/files/.hidden",
        "/files/%2ehidden",
        "/files/.",
        "/files/%ff%fe",
        "/files/link",  # a symlink that leads out
        "/files/dirlink%2Fsecret.txt",
        "/files/dirlink/secret.txt",
        "/files/dotlink",  # a symlink to the directory itself
        "http://test/files/../secret.txt",
        "http://test/files/..%2Fsecret.txt",
    ]


@pytest.fixture
def escape_setup(files_dir, secret):  # type: ignore[no-untyped-def]
    (files_dir / "link").symlink_to(secret)
    (files_dir / "dirlink").symlink_to(secret.parent, target_is_directory=True)
    (files_dir / "dotlink").symlink_to(files_dir, target_is_directory=True)
    (files_dir / ".hidden").write_bytes(SECRET)
    return secret


def test_get_never_leaves_the_files_directory(running_server, escape_setup):
    secret = escape_setup
    with RawClient.to(running_server) as client:
        for target in escape_targets(secret):
            client.send(request_bytes("GET", target, {"Accept-Encoding": "identity"}))
            response = client.read_response()
            assert response.status == 404, target
            assert b"SECRET" not in response.raw, target


def test_post_never_writes_outside_the_files_directory(running_server, escape_setup, files_dir):
    secret = escape_setup
    before = sorted(p.name for p in files_dir.parent.iterdir())
    before_inside = sorted(p.name for p in files_dir.iterdir())
    with RawClient.to(running_server) as client:
        for target in escape_targets(secret):
            client.send(request_bytes("POST", target, body=b"OVERWRITTEN"))
            response = client.read_response()
            assert response.status == 404, target
    assert secret.read_bytes() == SECRET
    assert (files_dir / ".hidden").read_bytes() == SECRET
    assert sorted(p.name for p in files_dir.parent.iterdir()) == before
    assert sorted(p.name for p in files_dir.iterdir()) == before_inside


def test_post_through_a_dangling_symlink_out_creates_nothing(running_server, files_dir,
                                                              tmp_path):
    outside = tmp_path / "would-be-created"
    (files_dir / "dangling").symlink_to(outside)
    assert fetch(running_server, "POST", "/files/dangling", b"data")[0] == 404
    assert not outside.exists()


def test_symlink_inside_the_directory_is_served(running_server, files_dir):
    (files_dir / "real.txt").write_bytes(b"real")
    (files_dir / "alias.txt").symlink_to(files_dir / "real.txt")
    assert fetch(running_server, "GET", "/files/alias.txt")[2] == b"real"


def test_served_files_are_not_compressed(running_server, files_dir):
    (files_dir / "page.txt").write_bytes(b"text " * 100)
    status, headers, body = fetch(running_server, "GET", "/files/page.txt",
                                  headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "Content-Encoding" not in headers
    assert body == b"text " * 100
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(body)


# ---- long names ----------------------------------------------------------------------------------

def test_get_a_name_too_long_for_the_filesystem_is_404(running_server):
    status, _, _ = fetch(running_server, "GET", "/files/" + "n" * 300)
    assert status == 404


def test_post_a_long_but_valid_name(running_server, files_dir):
    name = "l" * 250
    status, _, _ = fetch(running_server, "POST", "/files/" + name, b"long")
    assert status == 201
    assert (files_dir / name).read_bytes() == b"long"


def test_get_a_long_but_valid_name(running_server, files_dir):
    name = "g" * 255
    (files_dir / name).write_bytes(b"long name")
    assert fetch(running_server, "GET", "/files/" + name)[2] == b"long name"


def test_blocking_file_requests_report_queue_time(running_server, files_dir):
    (files_dir / "q").write_bytes(b"q")
    fetch(running_server, "GET", "/files/q")
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "request")[0]
    assert isinstance(line["queue_ms"], float) and line["queue_ms"] >= 0


# ---- odd files and preconditions ------------------------------------------------------------

def test_a_fifo_is_404_at_once_and_parks_no_pool_thread(running_server, files_dir):
    """A blocking open() of a FIFO waits for a writer: each such request held a pool thread
    until the pool was full and every request on the server hung."""
    fifo = files_dir / "pipe"
    os.mkfifo(fifo)
    try:
        for _ in range(6):  # more than the pool has threads
            assert fetch(running_server, "GET", "/files/pipe")[0] == 404
        assert fetch(running_server, "HEAD", "/files/pipe")[0] == 404
        assert fetch(running_server, "GET", "/echo/alive")[2] == b"alive"
    finally:
        # release any open() still waiting for a writer (the unfixed server), so it can stop
        for _ in range(8):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                break


def test_get_honours_if_match_and_if_none_match_star(running_server, files_dir):
    (files_dir / "doc.txt").write_bytes(b"document\n")
    # /files sends no ETag, so no tag a client sends can match (RFC 9110 13.1.1)
    assert fetch(running_server, "GET", "/files/doc.txt", headers={"If-Match": '"x"'})[0] == 412
    assert fetch(running_server, "GET", "/files/doc.txt", headers={"If-Match": "*"})[0] == 200
    assert fetch(running_server, "GET", "/files/doc.txt",
                 headers={"If-None-Match": "*"})[0] == 304
    assert fetch(running_server, "GET", "/files/none.txt", headers={"If-Match": "*"})[0] == 404


def test_writes_honour_if_unmodified_since(running_server, files_dir):
    """DELETE or POST with an If-Unmodified-Since older than the file: 412, file kept
    (RFC 9110 13.1.4); the date the file was last written lets them through."""
    path = files_dir / "kept.txt"
    path.write_bytes(b"original\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    before = "Sat, 01 Jan 2000 00:00:00 GMT"
    assert fetch(running_server, "DELETE", "/files/kept.txt",
                 headers={"If-Unmodified-Since": before})[0] == 412
    assert fetch(running_server, "POST", "/files/kept.txt", b"replaced\n",
                 headers={"If-Unmodified-Since": before})[0] == 412
    assert path.read_bytes() == b"original\n"
    at = "Tue, 14 Nov 2023 22:13:20 GMT"  # 1_700_000_000
    assert fetch(running_server, "DELETE", "/files/kept.txt",
                 headers={"If-Unmodified-Since": at})[0] == 204
    assert not path.exists()


def test_a_204_to_a_closing_request_says_connection_close(running_server, files_dir):
    (files_dir / "gone.txt").write_bytes(b"x")
    with RawClient.to(running_server) as client:
        client.send(request_bytes("DELETE", "/files/gone.txt", {"Connection": "close"}))
        response = client.read_response()
        assert (response.status, response.header("connection")) == (204, "close")
        assert client.is_closed_by_peer()


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_a_half_close_after_a_closing_request_gets_the_whole_file(running_server, files_dir,
                                                                  version):
    data = os.urandom(3_100_000)
    (files_dir / "big.bin").write_bytes(data)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((running_server.host, running_server.port))
    with sock:
        sock.sendall(f"GET /files/big.bin {version}\r\nHost: x\r\nConnection: close\r\n\r\n"
                     .encode())
        time.sleep(0.2)  # the answer is under way, its tail still queued in the server
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
    assert received.endswith(data) and b"Content-Length: 3100000" in received[:500]


@pytest.mark.expect_log({"event": "file-truncated", "level": "warning",
                         "path": "/files/shrinks.bin"})
def test_a_file_truncated_under_sendfile_is_one_warning_naming_it(running_server, files_dir):
    """A file that shrank while sendfile sent it cut the answer with nothing in the error
    log (a gzip stream cut the same way logged a traceback): one warning, as nginx's
    '"file" was truncated', names the request and the reason."""
    size = 24 * 1024 * 1024
    path = files_dir / "shrinks.bin"
    with open(path, "wb") as file:
        file.truncate(size)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(10)
    sock.connect((running_server.host, running_server.port))
    with sock:
        sock.sendall(b"GET /files/shrinks.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 100_000:
            received += len(sock.recv(65536))
        os.truncate(path, 1024 * 1024)
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    assert received < size
    [warning] = wait_for_log(running_server.error_log,
                             lambda x: x.get("event") == "file-truncated")
    assert "exception" not in warning and warning["method"] == "GET"
    assert warning["reason"].endswith(" bytes short of the length announced: changed while"
                                      " being sent")
    [line] = wait_for_log(running_server.access_log,
                          lambda r: r.get("path") == "/files/shrinks.bin")
    assert (line["status"], line["request_id"]) == (200, warning["request_id"])
    assert line["bytes_out"] == warning["bytes_out"] == received


def test_a_file_cut_short_by_the_client_logs_the_bytes_sent(running_server, files_dir):
    """`bytes_out` is what went out (nginx's $bytes_sent), not the planned length."""
    size = 24 * 1024 * 1024
    with open(files_dir / "huge.bin", "wb") as file:
        file.truncate(size)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(10)
    sock.connect((running_server.host, running_server.port))
    sock.sendall(b"GET /files/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    received = 0
    while received < 100_000:
        received += len(sock.recv(65536))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset: the rest is never sent
    [line] = wait_for_log(running_server.access_log, lambda r: r.get("path") == "/files/huge.bin")
    assert line["status"] == 200 and received <= line["bytes_out"] < size - 8 * 1024 * 1024
