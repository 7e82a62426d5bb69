"""Streamed uploads to /files: PUT/POST/DELETE, conditions, early refusal, concurrency."""

from __future__ import annotations

import os
import threading

import pytest

from tests.conftest import (
    RawClient,
    fetch,
    read_log,
    request_bytes,
    upload_files,
    wait_for_log,
    wait_until,
)


def test_put_creates_with_201_then_replaces_with_204(running_server, files_dir):
    assert fetch(running_server, "PUT", "/files/doc", b"one")[0] == 201
    assert (files_dir / "doc").read_bytes() == b"one"
    assert fetch(running_server, "PUT", "/files/doc", b"two!")[0] == 204
    assert (files_dir / "doc").read_bytes() == b"two!"
    assert sorted(os.listdir(files_dir)) == ["doc"]  # no temp file left beside it


def test_post_keeps_answering_201_when_it_replaces(running_server, files_dir):
    (files_dir / "doc").write_bytes(b"old")
    assert fetch(running_server, "POST", "/files/doc", b"new")[0] == 201
    assert (files_dir / "doc").read_bytes() == b"new"


def test_delete_removes_the_file_then_404s(running_server, files_dir):
    (files_dir / "doc").write_bytes(b"x")
    assert fetch(running_server, "DELETE", "/files/doc")[0] == 204
    assert not (files_dir / "doc").exists()
    assert fetch(running_server, "DELETE", "/files/doc")[0] == 404


@pytest.mark.parametrize(("exists", "headers", "status"), [
    (True, {"If-None-Match": "*"}, 412),   # create-only, but it exists
    (False, {"If-None-Match": "*"}, 201),
    (False, {"If-Match": "*"}, 412),        # replace-only, but it is missing
    (True, {"If-Match": "*"}, 204),
    (True, {"If-Match": '"some-etag"'}, 412),
])
def test_conditional_put(running_server, files_dir, exists, headers, status):
    if exists:
        (files_dir / "doc").write_bytes(b"old")
    assert fetch(running_server, "PUT", "/files/doc", b"new", headers)[0] == status
    expected = b"new" if status in (201, 204) else (b"old" if exists else None)
    assert ((files_dir / "doc").read_bytes() if (files_dir / "doc").exists() else None) \
        == expected
    assert not [p for p in os.listdir(files_dir) if p.startswith(".")]


def test_large_chunked_upload_streams_to_disk(running_server, files_dir):
    piece = os.urandom(64 * 1024)
    with RawClient.to(running_server) as client:
        client.send(request_bytes("PUT", "/files/big", {"Transfer-Encoding": "chunked"}))
        for _ in range(128):  # 8 MiB
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        client.send(b"0\r\n\r\n")
        assert client.read_response().status == 201
    assert (files_dir / "big").read_bytes() == piece * 128
    line = wait_for_log(running_server.access_log, lambda r: r.get("method") == "PUT")[0]
    assert line["bytes_in"] == 128 * len(piece)
    assert line["queue_ms"] is not None  # the body went through the pool


def test_put_of_50000_one_byte_chunks_stores_the_file(running_server, files_dir):
    body = bytes(range(256)) * 195 + bytes(range(80))  # 50,000 bytes, one per chunk
    wire = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    with RawClient.to(running_server) as client:
        client.send(request_bytes("PUT", "/files/tiny-chunks", {"Transfer-Encoding": "chunked"})
                    + wire)
        assert client.read_response().status == 201
    assert (files_dir / "tiny-chunks").read_bytes() == body
    line = wait_for_log(running_server.access_log, lambda r: r.get("method") == "PUT")[0]
    assert line["bytes_in"] == len(body)


def test_bad_name_is_refused_before_the_body_and_no_100_continue(running_server, files_dir):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("PUT", "/files/..%2Fescape",
                                  {"Content-Length": "5", "Expect": "100-continue"}))
        response = client.read_response()
        assert response.status == 404
        assert response.header("connection") == "close"  # the unread body ends the stream
    assert os.listdir(files_dir) == []


def test_concurrent_puts_of_one_name_end_with_one_whole_body(running_server, files_dir):
    bodies = [bytes([65 + i]) * (300_000 + i) for i in range(8)]
    statuses: list[int] = []

    def put(body: bytes) -> None:
        statuses.append(fetch(running_server, "PUT", "/files/shared", body)[0])

    threads = [threading.Thread(target=put, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(set(statuses)) <= [201, 204] and len(statuses) == len(bodies)
    assert (files_dir / "shared").read_bytes() in bodies
    assert os.listdir(files_dir) == ["shared"]


def test_client_killed_mid_put_leaves_no_trace(running_server, files_dir, upload_kind):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("PUT", "/files/half", {"Content-Length": "1000000"})
                    + b"x" * 300_000)
        assert wait_until(lambda: upload_files(files_dir))
        named = [p for p in os.listdir(files_dir) if p.startswith(".upload-")]
        assert len(named) == (upload_kind == "named")
    # the socket closed with 700,000 bytes missing: the file must go, nothing lands
    assert wait_until(lambda: upload_files(files_dir) == [] and os.listdir(files_dir) == [])
    rejected = wait_for_log(running_server.access_log, lambda r: r.get("event") == "rejected")
    assert rejected[0]["reason"] == "client-abort"
    assert [r for r in read_log(running_server.access_log) if r.get("method") == "PUT"
            and r.get("event") == "request"] == []
