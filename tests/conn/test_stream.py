"""Streamed response bodies: chunked framing, HTTP/1.0 close-delimiting, back-pressure,
producer errors and client disconnects, against the real server."""

from __future__ import annotations

import gzip
import io
import socket
import struct
import threading

import pytest

from reactor.app.compression import GzipStream
from reactor.app.types import Response, StreamBody
from reactor.conn.stream import BodyStreamer
from reactor.loop import EventLoop
from tests.conftest import RawClient, request_bytes, wait_for_log, wait_until

PIECE = b"0123456789abcdef" * 4096  # 64 KiB


class Counting:
    """A producer of `pieces` pieces that records how far it got and whether it was closed."""

    def __init__(self, pieces: int, fail_at: int | None = None) -> None:
        self.pieces = pieces
        self.fail_at = fail_at
        self.produced = 0
        self.closed = threading.Event()

    def produce(self) -> bytes:
        if self.produced == self.fail_at:
            raise RuntimeError("disk on fire")
        if self.produced == self.pieces:
            return b""
        self.produced += 1
        return PIECE

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def streaming(running_server):  # type: ignore[no-untyped-def]
    producers: dict[str, Counting] = {}

    def handler(request):  # type: ignore[no-untyped-def]
        producer = producers[request.params["name"].decode()]
        return Response(200, [(b"Content-Type", b"application/octet-stream")],
                        StreamBody(producer.produce, producer.close))

    running_server.server.http.app.router.get("/stream/{name}", handler)
    return running_server, producers


def read_chunked(client: RawClient) -> bytes:
    body = b""
    while True:
        size = int(client.read_until(b"\r\n")[:-2].split(b";")[0], 16)
        if size == 0:
            assert client.read_until(b"\r\n") == b"\r\n"
            return body
        body += client.read_exactly(size)
        assert client.read_exactly(2) == b"\r\n"


def test_http11_stream_is_chunked_and_keeps_the_connection(streaming):
    running, producers = streaming
    producers["a"] = Counting(40)  # 2.5 MiB
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/stream/a") + request_bytes("GET", "/echo/next"))
        head = client.read_response(head=True)
        assert head.status == 200 and head.header("transfer-encoding") == "chunked"
        assert head.header("content-length") is None
        assert read_chunked(client) == PIECE * 40
        assert client.read_response().body == b"next"  # the pipelined one waited its turn
    assert producers["a"].closed.wait(5)
    line = wait_for_log(running.access_log, lambda r: r.get("path") == "/stream/a")[0]
    assert line["status"] == 200 and line["bytes_out"] > 40 * len(PIECE)


def test_http10_stream_is_delimited_by_close(streaming):
    running, producers = streaming
    producers["b"] = Counting(3)
    with RawClient.to(running) as client:
        client.send(b"GET /stream/b HTTP/1.0\r\n\r\n")
        data = client.read_to_eof()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head
    assert body == PIECE * 3


def test_head_of_a_stream_produces_nothing(streaming):
    running, producers = streaming
    producers["c"] = Counting(3)
    with RawClient.to(running) as client:
        client.send(request_bytes("HEAD", "/stream/c"))
        assert client.read_response(head=True).status == 200
    assert producers["c"].closed.wait(5) and producers["c"].produced == 0


def test_a_client_that_does_not_read_pauses_the_producer(streaming):
    running, producers = streaming
    producers["d"] = Counting(10_000)  # 640 MiB if nothing held it back
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/stream/d"))
        assert wait_until(lambda: producers["d"].produced > 0)
        # kernel buffers fill, then the transport's high-water mark stops production
        assert not wait_until(lambda: producers["d"].produced > 400, timeout=1.0)
    assert producers["d"].closed.wait(5)  # the disconnect cancelled and closed it


@pytest.mark.expect_log("stream-error")
def test_a_failing_producer_truncates_the_body_and_logs(streaming):
    running, producers = streaming
    producers["e"] = Counting(10, fail_at=2)
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/stream/e"))
        assert client.read_response(head=True).status == 200
        data = client.read_to_eof()  # closed without the last chunk
    assert not data.endswith(b"0\r\n\r\n")
    assert producers["e"].closed.wait(5)
    assert wait_until(lambda: "stream-error" in running.error_log.read_text())
    # and the access log has its line, saying what went out (the head counts)
    [line] = wait_for_log(running.access_log, lambda r: r.get("path") == "/stream/e")
    assert line["status"] == 200 and len(data) <= line["bytes_out"] - 100
    assert line["bytes_out"] <= 2 * (len(PIECE) + 20) + 300


@pytest.mark.expect_log("stream-error")
def test_a_stream_to_a_closing_http11_connection_is_still_chunked(streaming):
    """A client that sent `Connection: close` (Python's urllib always does) got a streamed
    body delimited by the close: a producer that failed half-way ended the body exactly as
    a whole one ends, and urllib returned the cut body as complete. Chunked, the missing
    last chunk says it was cut (as h11, gunicorn and nginx frame it)."""
    running, producers = streaming
    producers["f"] = Counting(3)
    producers["g"] = Counting(10, fail_at=2)
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/stream/f", {"Connection": "close"}))
        head = client.read_response(head=True)
        assert head.header("transfer-encoding") == "chunked"
        assert head.header("connection") == "close"
        assert read_chunked(client) == PIECE * 3
        assert client.read_to_eof() == b""  # and then the close it announced
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/stream/g", {"Connection": "close"}))
        assert client.read_response(head=True).header("transfer-encoding") == "chunked"
        data = client.read_to_eof()
    assert data.startswith(b"10000\r\n") and not data.endswith(b"0\r\n\r\n")
    assert wait_until(lambda: "stream-error" in running.error_log.read_text())


def test_gzip_stream_compresses_a_file_piece_by_piece():
    data = (b"reactor streams gzip " * 50_000) + bytes(range(256)) * 100
    produce = GzipStream(io.BytesIO(data), level=6, read_bytes=4096)
    pieces = []
    while piece := produce():
        pieces.append(piece)
    assert len(pieces) > 1 and produce() == b""
    assert gzip.decompress(b"".join(pieces)) == data


def run_until_stopped(loop: EventLoop) -> None:
    """Run `loop` until the test's callbacks stop it (at most 5 s), then close it."""
    guard = loop.call_later(5.0, loop.stop)
    try:
        loop.run_forever()
    finally:
        guard.cancel()
        loop.close()


def test_a_peer_lost_inside_a_write_closes_the_body_once_and_produces_no_more() -> None:
    """The write of a piece can find the connection gone (a reset on send): the exchange
    cancels the streamer from inside `write`. The body is then closed once, in the pool, and
    never asked for another piece (it was: a second `close()` followed a `produce()` after
    the first)."""
    loop = EventLoop(pool_threads=2)
    calls: list[str] = []
    closed = threading.Event()

    def produce() -> bytes:
        calls.append("produce")
        return b"piece"

    def close() -> None:
        calls.append("close")
        closed.set()
        loop.call_soon_threadsafe(loop.call_later, 0.05, loop.stop)

    def write(data: bytes) -> None:
        calls.append("write")
        if calls.count("write") == 2:
            streamer.cancel()  # what connection_lost -> Exchange.cancel does

    streamer = BodyStreamer(loop, StreamBody(produce, close), chunked=True, write=write,
                            done=lambda error: calls.append(f"done {error}"),
                            close_failed=lambda exc: calls.append(f"close failed {exc}"))
    run_until_stopped(loop)
    assert closed.is_set()
    assert calls == ["produce", "write", "produce", "write", "close"]


def test_close_runs_on_a_pool_thread_after_the_last_chunk() -> None:
    loop = EventLoop(pool_threads=1)
    events: list[str] = []
    loop_thread = threading.current_thread()

    def close() -> None:
        events.append("close on loop" if threading.current_thread() is loop_thread
                      else "close in pool")
        loop.call_soon_threadsafe(loop.stop)

    pieces = [b"a", b""]
    BodyStreamer(loop, StreamBody(lambda: pieces.pop(0), close), chunked=True,
                 write=lambda data: events.append(f"write {data!r}"),
                 done=lambda error: events.append(f"done {error}"),
                 close_failed=lambda exc: events.append(f"close failed {exc}"))
    run_until_stopped(loop)
    assert events == ["write b'1\\r\\na\\r\\n'", "write b'0\\r\\n\\r\\n'", "done None",
                      "close in pool"]


def test_a_stream_cut_by_the_client_is_logged_with_what_went_out(streaming):
    """Every request gets its access line: a client leaving mid-stream left none. nginx
    logs such an answer with its status and the bytes it sent."""
    running, producers = streaming
    producers["f"] = Counting(10_000)
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/stream/f"))
        client.read_exactly(300_000)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert producers["f"].closed.wait(5)
    [line] = wait_for_log(running.access_log, lambda r: r.get("path") == "/stream/f")
    produced = producers["f"].produced * len(PIECE)
    assert line["status"] == 200 and 300_000 <= line["bytes_out"] < produced + 1000
