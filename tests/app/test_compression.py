"""gzip by Accept-Encoding: negotiation (unit) and compressed responses over the wire."""

from __future__ import annotations

import gzip
import string
import zlib

import pytest

from reactor.app.compression import CompressibleTypes, accepts_gzip, gzip_bytes
from reactor.app.types import Headers, Request, Response
from tests.conftest import RawClient, request_bytes, start_server, wait_for_log

# ---- accepts_gzip ----------------------------------------------------------------------------

ACCEPT_ENCODINGS = [
    (None, False),
    (b"", False),
    (b"gzip", True),
    (b"GZIP", True),
    (b"x-gzip", True),
    (b"deflate, gzip, br", True),
    (b"deflate,gzip", True),
    (b"  gzip  ", True),
    (b"br, deflate", False),
    (b"identity", False),
    (b"gzip;q=0", False),
    (b"gzip; q=0", False),
    (b"gzip;Q=0", False),
    (b"gzip;q=0.0", False),
    (b"gzip;q=0.000", False),
    (b"gzip;q=0.001", True),
    (b"gzip;q=0.5, br;q=1.0", True),
    (b"gzip;q=1", True),
    (b"*", True),
    (b"*;q=0", False),
    (b"*;q=0.1", True),
    (b"gzip;q=0, *", False),  # an explicit refusal beats the wildcard
    (b"*;q=0, gzip", True),
    (b"br, *", True),
    (b"gzip;q=abc", False),  # a malformed weight is ignored, not guessed
    (b"gzip;q=2", False),
    (b"gzip;q", False),
    (b"compress, unknown-coding;q=1", False),
    (b"gzipx", False),
    (b"gzip-ish, *;q=0", False),
]


@pytest.mark.parametrize(("header", "expected"), ACCEPT_ENCODINGS)
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected


def test_accepts_gzip_answers_the_same_when_cached():
    for _ in range(3):
        assert accepts_gzip(b"gzip;q=0") is False
        assert accepts_gzip(b"gzip;q=0.7") is True


@pytest.mark.parametrize(("content_type", "expected"), [
    (b"text/plain", True),
    (b"text/html; charset=utf-8", True),
    (b"TEXT/CSS", True),
    (b"application/json", True),
    (b"image/svg+xml", True),
    (b"application/octet-stream", False),
    (b"image/png", False),
    (b"textual/plain", False),
    (b"", False),
    (None, False),
])
def test_compressible_types(content_type, expected):
    assert (content_type in CompressibleTypes()) is expected


def test_gzip_bytes_round_trips_and_is_deterministic():
    data = b"hello " * 1000
    packed = gzip_bytes(data)
    assert gzip.decompress(packed) == data
    assert gzip_bytes(data) == packed
    assert len(packed) < len(data)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(gzip_bytes(b"")) == b""


# ---- over the wire -----------------------------------------------------------------------------

def get(client: RawClient, target: str, accept_encoding: str | None = None,
        method: str = "GET"):  # type: ignore[no-untyped-def]
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    client.send(request_bytes(method, target, headers))
    return client.read_response(head=method == "HEAD")


def test_short_echo_is_gzipped(running_server):
    with RawClient.to(running_server) as client:
        response = get(client, "/echo/abc", "gzip")
    assert response.status == 200
    assert response.header("content-encoding") == "gzip"
    assert response.header("vary") == "Accept-Encoding"
    assert response.header("content-type") == "text/plain"
    assert int(response.header("content-length")) == len(response.body)
    assert gzip.decompress(response.body) == b"abc"


@pytest.mark.parametrize(("header", "expected"), [
    (entry[0].decode(), entry[1]) for entry in ACCEPT_ENCODINGS if entry[0]
])
def test_negotiation_over_the_wire(running_server, header, expected):
    with RawClient.to(running_server) as client:
        response = get(client, "/echo/negotiated", header)
    assert response.header("vary") == "Accept-Encoding"
    if expected:
        assert response.header("content-encoding") == "gzip"
        assert gzip.decompress(response.body) == b"negotiated"
    else:
        assert response.headers("content-encoding") == []
        assert response.body == b"negotiated"


def test_no_accept_encoding_means_no_content_encoding(running_server):
    with RawClient.to(running_server) as client:
        response = get(client, "/echo/plain")
    assert response.headers("content-encoding") == []
    assert response.body == b"plain"
    assert response.header("content-length") == "5"


def test_repeated_accept_encoding_lines_are_one_list(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/echo/split", {"Accept-Encoding": "br"})[:-2]
                    + b"Accept-Encoding: gzip\r\n\r\n")
        response = client.read_response()
    assert response.header("content-encoding") == "gzip"
    assert gzip.decompress(response.body) == b"split"


def test_user_agent_body_is_gzipped_too(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/user-agent",
                                  {"User-Agent": "zipped/1", "Accept-Encoding": "gzip"}))
        response = client.read_response()
        assert response.header("content-encoding") == "gzip"
        assert gzip.decompress(response.body) == b"zipped/1"


def test_empty_root_body_is_not_encoded(running_server):
    with RawClient.to(running_server) as client:
        response = get(client, "/", "gzip")
    assert response.status == 200
    assert response.headers("content-encoding") == []  # no media type: nothing to compress
    assert response.body == b""


def test_head_of_a_gzipped_response_matches_get(running_server):
    with RawClient.to(running_server) as client:
        got = get(client, "/echo/compress-me", "gzip")
        head = get(client, "/echo/compress-me", "gzip", method="HEAD")
        assert get(client, "/echo/after").body == b"after"
    assert head.header("content-encoding") == "gzip"
    assert head.header("content-length") == got.header("content-length")


def _text(size: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(alphabet[(i * 7 + i // 13) % len(alphabet)] for i in range(size))


@pytest.fixture
def long_lines_server(tmp_path):  # type: ignore[no-untyped-def]
    running = start_server(tmp_path, limits={"max_request_line": 65536,
                                             "max_header_bytes": 131072})
    yield running
    running.stop()


def test_large_body_is_compressed_in_the_pool(long_lines_server):
    text = _text(20_000)
    with RawClient.to(long_lines_server) as client:
        response = get(client, "/echo/" + text, "gzip")
        # pipelined right behind it: must wait for the pool and come second
        client.send(request_bytes("GET", "/echo/x" + text[:5000], {"Accept-Encoding": "gzip"})
                    + request_bytes("GET", "/echo/second"))
        third = client.read_response()
        fourth = client.read_response()
    assert response.status == 200
    assert response.header("content-encoding") == "gzip"
    assert int(response.header("content-length")) == len(response.body) < len(text)
    assert gzip.decompress(response.body) == text.encode()
    assert gzip.decompress(third.body) == b"x" + text[:5000].encode()
    assert fourth.body == b"second"
    lines = wait_for_log(long_lines_server.access_log, lambda x: x["event"] == "request", 3)
    assert isinstance(lines[0]["queue_ms"], float) and lines[0]["queue_ms"] >= 0
    assert lines[0]["content_encoding"] == "gzip"
    assert lines[2]["queue_ms"] is None  # a short inline answer never saw the pool


def test_large_body_without_gzip_stays_inline_and_plain(long_lines_server):
    text = _text(20_000)
    with RawClient.to(long_lines_server) as client:
        response = get(client, "/echo/" + text)
    assert response.headers("content-encoding") == []
    assert response.body == text.encode()
    line = wait_for_log(long_lines_server.access_log, lambda x: x["event"] == "request")[0]
    assert line["queue_ms"] is None
    assert line["content_encoding"] is None


def test_small_body_is_compressed_inline(running_server):
    with RawClient.to(running_server) as client:
        get(client, "/echo/" + "s" * 4000, "gzip")
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "request")[0]
    assert line["queue_ms"] is None and line["content_encoding"] == "gzip"


def test_compression_can_be_disabled(tmp_path):
    running = start_server(tmp_path, compression={"enabled": False})
    try:
        with RawClient.to(running) as client:
            response = get(client, "/echo/abc", "gzip")
        assert response.headers("content-encoding") == []
        assert response.body == b"abc"
    finally:
        running.stop()


def test_min_size_spares_short_bodies(tmp_path):
    running = start_server(tmp_path, compression={"min_size": 10})
    try:
        with RawClient.to(running) as client:
            short = get(client, "/echo/123456789", "gzip")
            long = get(client, "/echo/1234567890", "gzip")
        assert short.headers("content-encoding") == [] and short.body == b"123456789"
        assert long.header("content-encoding") == "gzip"
        assert gzip.decompress(long.body) == b"1234567890"
    finally:
        running.stop()


def test_compression_level_is_applied(tmp_path):
    text = _text(3000)
    running = start_server(tmp_path, compression={"level": 1})
    try:
        with RawClient.to(running) as client:
            response = get(client, "/echo/" + text, "gzip")
        expected = zlib.compressobj(1, zlib.DEFLATED, 31)
        assert response.body == expected.compress(text.encode()) + expected.flush()
    finally:
        running.stop()


def _finished(*fields: tuple[bytes, bytes]) -> Response:
    from reactor import App
    app = App()
    request = Request("GET", "/", "", "1.1", Headers([(b"accept-encoding", b"gzip")]), b"")
    response = Response(200, [(b"Content-Type", b"text/plain"), *fields], b"hello " * 200)
    result = app.finish(request, response, in_worker=True)
    assert isinstance(result, Response)
    return result


def test_a_strong_etag_on_a_gzipped_body_becomes_weak() -> None:
    # RFC 9110 8.8.3: the gzip bytes are another representation; nginx's gzip does the same
    response = _finished((b"ETag", b'"v1"'))
    assert response.header(b"content-encoding") == b"gzip"
    assert response.header(b"etag") == b'W/"v1"'
    assert _finished((b"ETag", b'W/"v2"')).header(b"etag") == b'W/"v2"'  # weak stays as is


def test_no_transform_is_left_as_the_app_sent_it() -> None:
    response = _finished((b"Cache-Control", b"public, No-Transform"))
    assert response.header(b"content-encoding") is None
    assert response.header(b"vary") is None and response.body == b"hello " * 200


def test_the_apps_vary_gains_accept_encoding_as_one_list() -> None:
    response = _finished((b"Vary", b"Cookie"))
    assert [v for n, v in response.headers if n.lower() == b"vary"] == [
        b"Cookie, Accept-Encoding"]
    star = _finished((b"vary", b"*"))
    assert star.headers.count((b"vary", b"*")) == 1
    assert [v for n, v in star.headers if n.lower() == b"vary"] == [b"*"]  # nothing added
    assert [v for n, v in _finished().headers if n == b"Vary"] == [b"Accept-Encoding"]
