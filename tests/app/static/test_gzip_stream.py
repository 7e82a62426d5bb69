"""Large compressible files: gzipped while sent (chunked), flat memory, same validators."""

from __future__ import annotations

import base64
import gzip
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from reactor.app.compression import CompressibleTypes, FileChanged
from reactor.app.static import StaticMount
from reactor.app.static.files import FileServer
from reactor.app.static.gzcache import GzipCache
from reactor.app.static.paths import open_under
from reactor.app.types import StreamBody
from tests.conftest import RawClient, request_bytes, wait_for_log

from .conftest import make_request


def read_chunked(client: RawClient) -> bytes:
    body = b""
    while True:
        size = int(client.read_until(b"\r\n")[:-2], 16)
        if size == 0:
            client.read_until(b"\r\n")
            return body
        body += client.read_exactly(size)
        client.read_exactly(2)


def test_a_file_over_the_cache_cap_streams_gzip_with_chunked_framing(serve, tmp_path: Path):
    root = tmp_path / "site"
    root.mkdir()
    text = b"".join(b"line %d of a large log-like text file\n" % i for i in range(200_000))
    (root / "big.txt").write_bytes(text)  # ~7.6 MiB, over the 1 MiB per-file cache cap
    running = serve(StaticMount("/", root), gzip_cache=GzipCache(file_max_bytes=1 << 20))
    gz = {"Accept-Encoding": "gzip"}
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/big.txt", gz))
        head = client.read_response(head=True)
        assert head.status == 200
        assert head.header("content-encoding") == "gzip"
        assert head.header("transfer-encoding") == "chunked"
        assert head.header("etag").endswith('-gz"')
        assert gzip.decompress(read_chunked(client)) == text
        # HEAD: the same head, no body produced
        client.send(request_bytes("HEAD", "/big.txt", gz))
        head_only = client.read_response(head=True)
        assert head_only.header("transfer-encoding") == "chunked"
        assert head_only.header("etag") == head.header("etag")
        # and the validators work against the streamed representation
        client.send(request_bytes("GET", "/big.txt",
                                  {**gz, "If-None-Match": head.header("etag")}))
        assert client.read_response(head=True).status == 304


@pytest.mark.expect_log({"event": "file-truncated", "level": "warning", "path": "/big.txt"})
def test_a_file_truncated_while_it_streams_gzip_cuts_the_answer(serve, tmp_path: Path):
    """As a sendfile answer is cut when its file shrinks, so is a gzip stream: a well-formed
    gzip of what is left would be taken (and cached, under the old ETag) as the whole file.
    The error log has one warning naming the request and the reason, as for sendfile (it
    was a `stream-error` with a traceback)."""
    root = tmp_path / "site"
    root.mkdir()
    big = root / "big.txt"
    big.write_bytes(base64.b64encode(os.urandom(12 << 20)))  # 16 MiB that barely compresses
    running = serve(StaticMount("/", root), gzip_cache=GzipCache(file_max_bytes=1 << 16))
    with RawClient.to(running) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        client.send(request_bytes("GET", "/big.txt", {"Accept-Encoding": "gzip"}))
        head = client.read_response(head=True)
        assert head.header("transfer-encoding") == "chunked"
        time.sleep(0.3)  # the producer stops at the high-water mark, far before 10 MiB
        os.truncate(big, 10 << 20)
        try:
            body: bytes | None = read_chunked(client)
        except (AssertionError, ConnectionResetError):  # closed inside the body: cut
            body = None
    assert body is None, "the truncated file went out as a whole gzip body"
    [warning] = wait_for_log(running.error_log, lambda x: x["event"] == "file-truncated")
    assert "exception" not in warning and warning["method"] == "GET"
    assert warning["reason"].startswith("the file ended ")
    assert warning["reason"].endswith(" bytes short of the length announced: changed while"
                                      " being sent")
    [line] = wait_for_log(running.access_log, lambda x: x.get("path") == "/big.txt")
    assert (line["status"], line["request_id"]) == (200, warning["request_id"])


def test_a_small_file_changed_since_its_stat_is_not_gzipped_whole(www: Path) -> None:
    """The in-memory gzip path (files up to the cache's cap) read a file that had shrunk
    since its stat and answered a complete gzip of what was left, under the validators of
    the whole file: now it streams, and the stream is cut where the file ends (as the
    identity answer, by sendfile, is). Deterministic: the rewrite lands between the stat
    and the read, where a `cp` over the file or a copytruncate would."""
    mount = StaticMount("/", www)
    files = FileServer(mount, GzipCache(), types=CompressibleTypes())
    opened = open_under(mount.root, ["style.css"], mount.symlinks)
    assert opened is not None
    os.truncate(www / "style.css", 100)
    request = make_request("GET", "/style.css", {"Accept-Encoding": "gzip"})
    response = files.respond(request, opened, ["style.css"])
    body = response.body
    assert type(body) is StreamBody, "a whole gzip body of the truncated file"
    try:
        with pytest.raises(FileChanged):
            while body.produce():
                pass
    finally:
        body.close()
    assert response.header(b"etag") is not None and len(files.cache) == 0


def _short_kernel_file() -> str | None:
    """A regular file whose stat says more bytes than a read gives (sysfs: 4096)."""
    for path in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/profiling",
                 "/sys/kernel/uevent_seqnum", "/sys/kernel/kexec_loaded"):
        try:
            info = os.stat(path)
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and 0 < len(data) < info.st_size <= 1 << 20:
            return path
    return None


@pytest.mark.expect_log({"event": "file-truncated", "path": "/kernel.txt"})
def test_a_file_shorter_than_its_stat_is_cut_not_gzipped_whole(serve, tmp_path: Path):
    """Over the wire: a file that reads shorter than its stat (a sysfs file, reached by a
    link under symlinks = "follow") got a complete 200 gzip of the few bytes there are,
    Content-Length and the ETag of a 4096-byte file; now the answer is cut."""
    target = _short_kernel_file()
    if target is None:
        pytest.skip("no sysfs file that reads shorter than its stat here")
    root = tmp_path / "site"
    root.mkdir()
    (root / "kernel.txt").symlink_to(target)
    running = serve(StaticMount("/", root, symlinks="follow"))
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/kernel.txt", {"Accept-Encoding": "gzip"}))
        head = client.read_response(head=True)
        assert head.status == 200 and head.header("content-encoding") == "gzip"
        assert head.header("transfer-encoding") == "chunked", \
            "a whole gzip body of a file that is not the size its ETag says"
        try:
            body: bytes | None = read_chunked(client)
        except (AssertionError, ConnectionResetError):  # closed inside the body: cut
            body = None
    assert body is None
