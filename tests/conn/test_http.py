"""HTTP/1.1 over real sockets: keep-alive, pipelining, 100-continue, timeouts, errors, logs."""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import re
import select
import socket
import ssl
import struct
import threading
import time

import pytest

from reactor import __version__
from reactor.app.types import Response
from tests.conftest import (
    EVENT_WAIT_S,
    RAW_TIMEOUT_S,
    RawClient,
    fetch,
    on_loop,
    read_log,
    request_bytes,
    start_server,
    upload_files,
    wait_for_log,
    wait_until,
)

IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT$")


def get(target: str, **headers: str) -> bytes:
    return request_bytes("GET", target, {k.replace("_", "-"): v for k, v in headers.items()})


@pytest.fixture
def small_limits_server(tmp_path, files_dir):  # type: ignore[no-untyped-def]
    running = start_server(tmp_path, files={"directory": files_dir},
                           limits={"max_body_bytes": 100})
    yield running
    running.stop()


# ---- keep-alive and connection handling ------------------------------------------------------

def test_keep_alive_serves_several_requests_on_one_socket(running_server):
    with RawClient.to(running_server) as client:
        for word in ("one", "two", "three"):
            client.send(get(f"/echo/{word}"))
            response = client.read_response()
            assert response.status == 200
            assert response.body == word.encode()
            assert response.header("connection") is None
    lines = wait_for_log(running_server.access_log, lambda x: x["event"] == "request", 3)
    assert len({line["conn_id"] for line in lines}) == 1
    assert [line["request_no"] for line in lines] == [1, 2, 3]


def test_http_client_reuses_the_connection(running_server):
    connection = http.client.HTTPConnection(running_server.host, running_server.port, timeout=5)
    try:
        connection.request("GET", "/echo/a")
        first = connection.getresponse()
        assert first.read() == b"a"
        sock = connection.sock
        connection.request("GET", "/echo/b")
        second = connection.getresponse()
        assert second.read() == b"b"
        assert connection.sock is sock  # not reconnected
    finally:
        connection.close()


def test_connection_close_is_honoured(running_server):
    with RawClient.to(running_server) as client:
        client.send(get("/echo/bye", Connection="close"))
        response = client.read_response()
        assert response.status == 200 and response.body == b"bye"
        assert response.header("connection") == "close"
        assert client.is_closed_by_peer()


def test_http10_closes_by_default(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/echo/old", version="HTTP/1.0", host=False))
        response = client.read_response()
        assert response.status == 200 and response.body == b"old"
        assert response.header("connection") == "close"
        assert client.is_closed_by_peer()


def test_http10_keep_alive_is_honoured_and_announced(running_server):
    with RawClient.to(running_server) as client:
        for word in ("first", "second"):
            client.send(request_bytes("GET", f"/echo/{word}", {"Connection": "keep-alive"},
                                      version="HTTP/1.0", host=False))
            response = client.read_response()
            assert response.status == 200 and response.body == word.encode()
            assert response.header("connection") == "keep-alive"


def test_a_later_http1_minor_version_is_served_as_http11(running_server):
    # RFC 9110 2.5: HTTP/1.2 is processed as the highest 1.x we speak, keep-alive included.
    with RawClient.to(running_server) as client:
        for word in ("first", "second"):
            client.send(request_bytes("GET", f"/echo/{word}", version="HTTP/1.2"))
            response = client.read_response()
            assert response.status == 200 and response.body == word.encode()
            assert response.header("connection") is None  # the reader checks HTTP/1.1


def test_half_closed_client_still_gets_its_answer(running_server):
    gate = threading.Event()

    def slow(_request):  # type: ignore[no-untyped-def]
        gate.wait(RAW_TIMEOUT_S)
        return Response(200, [(b"Content-Type", b"text/plain")], b"half-close")

    on_loop(running_server, lambda: running_server.server.app.router.get(
        "/slow", slow, blocking=True))
    with RawClient.to(running_server) as client:
        client.send(get("/slow"))
        client.sock.shutdown(socket.SHUT_WR)  # the request is complete; we only read now
        assert wait_until(lambda: on_loop(running_server, lambda: [
            t.protocol.peer_eof for t in running_server.server.http.connections]) == [True])
        gate.set()
        response = client.read_response()
        assert response.status == 200 and response.body == b"half-close"
        assert response.header("connection") == "close"
        assert client.is_closed_by_peer()


# ---- pipelining ------------------------------------------------------------------------------

def test_ten_pipelined_requests_are_answered_in_order(running_server, files_dir):
    (files_dir / "p.bin").write_bytes(b"from-a-file")
    targets = [f"/echo/req{i}" for i in range(10)]
    targets[3] = targets[7] = "/files/p.bin"  # answered from the pool, must not overtake
    expected = [b"from-a-file" if t.startswith("/files") else t[6:].encode() for t in targets]
    with RawClient.to(running_server) as client:
        client.send(b"".join(get(target) for target in targets))
        bodies = [client.read_response().body for _ in targets]
    assert bodies == expected


def test_pipelined_connection_close_ends_the_batch(running_server):
    with RawClient.to(running_server) as client:
        client.send(get("/echo/a") + get("/echo/b", Connection="close") + get("/echo/c"))
        first, second = client.read_response(), client.read_response()
        assert (first.body, second.body) == (b"a", b"b")
        assert second.header("connection") == "close"
        assert client.read_to_eof() == b""  # /echo/c is never answered


def test_bodies_keep_pipelined_requests_in_step(running_server):
    batch = (request_bytes("GET", "/echo/with-body", body=b"GET /echo/smuggled HTTP/1.1\r\n")
             + request_bytes("POST", "/echo/x", {"Transfer-Encoding": "chunked"})
             + b"4\r\nbody\r\n0\r\n\r\n"
             + b"\r\n"  # a stray empty line between requests is tolerated (RFC 9112 2.2)
             + get("/echo/last"))
    with RawClient.to(running_server) as client:
        client.send(batch)
        responses = [client.read_response() for _ in range(3)]
    assert [r.status for r in responses] == [200, 405, 200]
    assert responses[0].body == b"with-body" and responses[2].body == b"last"


@pytest.mark.parametrize("target", ["/", "/echo/hello", "/user-agent", "/files/h.txt",
                                    "/files/big.bin", "/nothing-here"])
@pytest.mark.parametrize("accept_encoding", ["", "gzip"])
def test_head_has_the_headers_of_get_and_no_body(running_server, files_dir, target,
                                                 accept_encoding):
    (files_dir / "h.txt").write_bytes(b"head me")
    (files_dir / "big.bin").write_bytes(b"x" * 100_000)
    headers = {"User-Agent": "head-test", "Accept-Encoding": accept_encoding}
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", target, headers))
        got = client.read_response()
        client.send(request_bytes("HEAD", target, headers) + get("/echo/after"))
        head = client.read_response(head=True)
        after = client.read_response()  # parses only if HEAD sent no body bytes
    assert head.status == got.status
    ignore = {"date", "x-request-id"}
    assert ([f for f in head.fields if f[0].lower() not in ignore]
            == [f for f in got.fields if f[0].lower() not in ignore])
    assert after.status == 200 and after.body == b"after"


# ---- slow and interim ----------------------------------------------------------------------

def test_request_trickled_one_byte_at_a_time(running_server, files_dir):
    data = (request_bytes("GET", "/echo/slowly", {"User-Agent": "trickle"})
            + request_bytes("POST", "/files/trickled", body=b"drip drip"))
    with RawClient.to(running_server) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            client.send(data[i:i + 1])
            time.sleep(0.0005)
        assert client.read_response().body == b"slowly"
        assert client.read_response().status == 201
    assert (files_dir / "trickled").read_bytes() == b"drip drip"


def test_expect_100_continue_before_the_body(running_server, files_dir):
    head = request_bytes("POST", "/files/continued",
                         {"Expect": "100-continue", "Content-Length": "5"})
    with RawClient.to(running_server) as client:
        client.send(head)
        interim = client.read_until(b"\r\n\r\n")  # before we sent a byte of the body
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"12345")
        response = client.read_response()
        assert response.status == 201
    assert (files_dir / "continued").read_bytes() == b"12345"


def test_expect_100_continue_over_the_limit_gets_413_instead(small_limits_server, files_dir):
    head = request_bytes("POST", "/files/refused",
                         {"Expect": "100-continue", "Content-Length": "1000"})
    with RawClient.to(small_limits_server) as client:
        client.send(head)
        response = client.read_response()  # no body sent: the answer must not wait for it
        assert response.status == 413
        assert response.header("connection") == "close"
        assert b"100 Continue" not in response.raw
        assert client.is_closed_by_peer()
    # an aborted streamed upload's file is closed (and removed, if named) by a pool job
    assert wait_until(lambda: upload_files(files_dir) == [] and not any(files_dir.iterdir()))


@pytest.mark.parametrize(("target", "status"), [("/echo/x", 405), ("/nowhere", 404)])
def test_expect_100_continue_to_a_route_that_refuses_gets_the_final_status_at_once(
        running_server, target, status):
    # RFC 9110 10.1.1: a status that the method, target and fields decide is sent instead
    # of 100 Continue; the body never comes, so the connection closes.
    head = request_bytes("POST", target, {"Expect": "100-continue", "Content-Length": "1000"})
    with RawClient.to(running_server) as client:
        client.send(head)
        response = client.read_response()  # no body sent: the answer must not wait for it
        assert response.status == status
        assert response.header("connection") == "close"
        assert b"100 Continue" not in response.raw
        assert client.is_closed_by_peer()
    # Without the expectation the body is read and the connection stays for the next request
    with RawClient.to(running_server) as client:
        client.send(request_bytes("POST", target, body=b"abc"))
        assert client.read_response().status == status
        client.send(request_bytes("GET", "/echo/again"))
        assert client.read_response().body == b"again"


def test_body_over_the_limit_gets_413_without_the_body_being_read(small_limits_server,
                                                                   files_dir):
    with RawClient.to(small_limits_server) as client:
        client.send(request_bytes("POST", "/files/big", {"Content-Length": "101"}))
        response = client.read_response()  # answered from the head alone
        assert response.status == 413
        assert response.header("connection") == "close"
        assert client.is_closed_by_peer()
    # an aborted streamed upload's file is closed (and removed, if named) by a pool job
    assert wait_until(lambda: upload_files(files_dir) == [] and not any(files_dir.iterdir()))
    rejected = wait_for_log(small_limits_server.access_log,
                            lambda x: x["event"] == "rejected")[0]
    assert rejected["status"] == 413 and rejected["path"] == "/files/big"


def test_body_at_the_limit_is_accepted(small_limits_server, files_dir):
    with RawClient.to(small_limits_server) as client:
        client.send(request_bytes("POST", "/files/exact", body=b"b" * 100))
        assert client.read_response().status == 201
    assert (files_dir / "exact").read_bytes() == b"b" * 100


def test_chunked_upload_with_trailer(running_server, files_dir):
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
    with RawClient.to(running_server) as client:
        client.send(request_bytes("POST", "/files/chunked", {"Transfer-Encoding": "chunked"})
                    + body)
        assert client.read_response().status == 201
        client.send(get("/files/chunked"))  # the connection is still in step
        assert client.read_response().body == b"hello world"


def test_chunked_body_over_the_limit_gets_413(small_limits_server, files_dir):
    with RawClient.to(small_limits_server) as client:
        client.send(request_bytes("POST", "/files/chunky", {"Transfer-Encoding": "chunked"})
                    + b"40\r\n" + b"a" * 64 + b"\r\n40\r\n")
        response = client.read_response()
        assert response.status == 413
        assert client.is_closed_by_peer()
    # an aborted streamed upload's file is closed (and removed, if named) by a pool job
    assert wait_until(lambda: upload_files(files_dir) == [] and not any(files_dir.iterdir()))


# ---- protocol errors ---------------------------------------------------------------------------

def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _long_request_line(length: int) -> bytes:
    filler = length - len("GET /echo/ HTTP/1.1")
    return f"GET /echo/{'a' * filler} HTTP/1.1".encode()


def _head_of_size(size: int) -> bytes:
    """A valid GET head of exactly `size` bytes (CRLFs included)."""
    base = _head("GET /echo/sized HTTP/1.1", "Host: t", "X-Fill: ")
    return _head("GET /echo/sized HTTP/1.1", "Host: t", "X-Fill: " + "f" * (size - len(base)))


def _head_with_fields(count: int) -> bytes:
    """A valid GET head with `count` header fields, Host included."""
    return _head("GET /echo/fields HTTP/1.1", "Host: t",
                 *(f"X-F{i}: v" for i in range(count - 1)))


PROTOCOL_ERRORS = [
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Content-Length: 3",
                       "Transfer-Encoding: chunked"), 400,
                 "content-length-and-transfer-encoding", id="cl-and-te"),
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Content-Length: 3",
                       "Content-Length: 4"), 400, "conflicting-content-length",
                 id="differing-duplicate-cl"),
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Content-Length: 3, 4"), 400,
                 "conflicting-content-length", id="differing-cl-list"),
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Content-Length: abc"), 400,
                 "invalid-content-length", id="non-digit-cl"),
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Content-Length: -1"), 400,
                 "invalid-content-length", id="negative-cl"),
    pytest.param(_head("GET / HTTP/1.1", "Host: t", "X-A: one", " two"), 400, "obs-fold",
                 id="obs-fold"),
    pytest.param(_head("GET / HTTP/1.1", "Host: t", "X-A : one"), 400,
                 "whitespace-before-colon", id="whitespace-before-colon"),
    pytest.param(_head("GET / HTTP/1.1", "Host: t", "X-A: a\x01b"), 400,
                 "invalid-field-value", id="control-char-in-value"),
    pytest.param(_head("GET / HTTP/1.1", "Host: t", "X-A: a\x00b"), 400,
                 "invalid-field-value", id="nul-in-value"),
    pytest.param(_head("GET / HTTP/1.1", "Host: t", "X-A: a\x7fb"), 400,
                 "invalid-field-value", id="del-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", 400, "bare-lf", id="bare-lf"),
    pytest.param(_head("GET / HTTP/1.1", "User-Agent: x"), 400, "missing-host",
                 id="missing-host"),
    pytest.param(_head("GET / HTTP/1.1", "Host: a", "Host: b"), 400, "duplicate-host",
                 id="duplicate-host"),
    pytest.param(_head("GET  / HTTP/1.1", "Host: t"), 400, "invalid-request-line",
                 id="double-space"),
    # A TLS client on the plain port: refused at its first byte, not after the header timeout
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), 400,
                 "invalid-method", id="tls-client-hello"),
    # chunked announced, the raw body sent: refused at its first byte, not after 60 s
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Transfer-Encoding: chunked")
                 + b"hello world", 400, "invalid-chunk-size", id="raw-body-as-chunked"),
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t", "Transfer-Encoding: gzip"), 501,
                 "unsupported-transfer-coding", id="te-gzip"),
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t",
                       "Transfer-Encoding: gzip, chunked"), 501,
                 "unsupported-transfer-coding", id="te-gzip-chunked"),
    # RFC 9112 6.3: chunked, but not as the final coding: a 400, not a 501
    pytest.param(_head("POST /files/x HTTP/1.1", "Host: t",
                       "Transfer-Encoding: chunked, identity"), 400,
                 "chunked-not-last", id="te-chunked-identity"),
    pytest.param(_head("GET / HTTP/1.1", "Host: evil.example/x?"), 400, "invalid-host",
                 id="invalid-host"),
    pytest.param(_head("GET / HTTP/2.0", "Host: t"), 505, "unsupported-http-version",
                 id="http-2.0"),
    pytest.param(_head("GET / HTTP/0.9", "Host: t"), 505, "unsupported-http-version",
                 id="http-0.9"),
    pytest.param(_head("GET / HTTP/1", "Host: t"), 400, "invalid-http-version",
                 id="malformed-version"),
    pytest.param(_long_request_line(8193) + b"\r\nHost: t\r\n\r\n", 414,
                 "request-line-too-long", id="request-line-8193"),
    pytest.param(_long_request_line(20000), 414, "request-line-too-long",
                 id="request-line-unfinished"),
    pytest.param(_head_of_size(32769), 431, "header-section-too-large", id="head-32769"),
    pytest.param(_head("GET / HTTP/1.1", "Host: t", "X-Big: " + "b" * 40000), 431,
                 "header-section-too-large", id="head-40k"),
    pytest.param(_head_with_fields(101), 431, "too-many-header-fields", id="101-fields"),
]


@pytest.mark.parametrize(("request_data", "status", "reason"), PROTOCOL_ERRORS)
def test_protocol_error_is_answered_then_the_connection_closed(running_server, request_data,
                                                               status, reason):
    with RawClient.to(running_server) as client:
        client.send(request_data)
        response = client.read_response()
        assert response.status == status
        assert response.header("connection") == "close"
        assert (response.header("content-type") or "").startswith("text/plain")
        assert 0 < len(response.body) < 200
        assert client.is_closed_by_peer()
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "rejected")[0]
    assert (line["status"], line["reason"]) == (status, reason)


def test_a_tls_client_on_the_plain_port_fails_its_handshake_at_once(running_server):
    # A real TLS client (https:// to an http:// port) gets the 400 as its "ServerHello" and
    # fails the handshake then, instead of waiting out the server's header timeout (20 s).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    address = ("127.0.0.1", running_server.port)
    with (socket.create_connection(address, timeout=RAW_TIMEOUT_S) as sock,
          pytest.raises(ssl.SSLError)):
        context.wrap_socket(sock, server_hostname="localhost")
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "rejected")[0]
    assert (line["status"], line["reason"], line["method"]) == (400, "invalid-method", None)


@pytest.mark.parametrize(("request_data", "status", "reason"), [
    p for p in PROTOCOL_ERRORS
    if p.id in {"cl-and-te", "te-gzip", "http-2.0", "request-line-8193", "101-fields"}])
def test_protocol_error_answer_has_the_common_headers(running_server, request_data, status,
                                                      reason):
    with RawClient.to(running_server) as client:
        client.send(request_data)
        response = client.read_response()
    assert response.status == status
    assert IMF_FIXDATE.match(response.header("date") or "")
    assert response.header("server") == f"reactor/{__version__}"
    assert response.header("x-request-id")


@pytest.mark.parametrize(("request_data", "body"), [
    pytest.param(_long_request_line(8192) + b"\r\nHost: t\r\n\r\n",
                 b"a" * (8192 - len("GET /echo/ HTTP/1.1")), id="request-line-8192"),
    pytest.param(_head_of_size(32768), b"sized", id="head-32768"),
    pytest.param(_head_with_fields(100), b"fields", id="100-fields"),
])
def test_requests_at_the_limits_are_served(running_server, request_data, body):
    with RawClient.to(running_server) as client:
        client.send(request_data)
        response = client.read_response()
    assert response.status == 200
    assert response.body == body


def test_connect_method_is_not_implemented(running_server):
    with RawClient.to(running_server) as client:
        client.send(_head("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"))
        assert client.read_response().status == 501
    # the authority-form target is what was asked, not a URI cut at its third byte
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "request")[0]
    assert (line["method"], line["path"]) == ("CONNECT", "example.com:443")


# ---- timeouts ----------------------------------------------------------------------------------

def test_header_timeout_answers_408_then_closes(tmp_path):
    running = start_server(tmp_path, timeouts={"header_s": 0.5})
    try:
        with RawClient.to(running, timeout=EVENT_WAIT_S) as client:
            started = time.monotonic()
            client.send(b"GET /echo/slow HTTP/1.1\r\nHo")
            response = client.read_response()
            elapsed = time.monotonic() - started
            assert response.status == 408
            assert response.header("connection") == "close"
            assert client.is_closed_by_peer()
        assert elapsed >= 0.4  # not early; a slow machine only makes it later
        line = wait_for_log(running.access_log, lambda x: x["event"] == "rejected")[0]
        assert (line["status"], line["reason"]) == (408, "header-timeout")
    finally:
        running.stop()


def test_silent_connection_is_closed_after_the_header_timeout_without_an_answer(tmp_path):
    running = start_server(tmp_path, timeouts={"header_s": 0.3})
    try:
        with RawClient.to(running, timeout=EVENT_WAIT_S) as client:
            started = time.monotonic()
            assert client.read_to_eof() == b""
            assert time.monotonic() - started >= 0.2  # not early
    finally:
        running.stop()


def test_body_timeout_answers_408(tmp_path, files_dir):
    running = start_server(tmp_path, files={"directory": files_dir}, timeouts={"body_s": 0.3})
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("POST", "/files/partial", {"Content-Length": "10"})
                        + b"abc")
            response = client.read_response()
            assert response.status == 408
            assert client.is_closed_by_peer()
        # an aborted streamed upload's file is closed (and removed, if named) by a pool job
        assert wait_until(lambda: upload_files(files_dir) == [] and not any(files_dir.iterdir()))
        line = wait_for_log(running.access_log, lambda x: x["event"] == "rejected")[0]
        assert (line["status"], line["reason"]) == (408, "body-timeout")
    finally:
        running.stop()


def test_idle_keep_alive_connection_is_closed_after_keepalive_s(tmp_path):
    running = start_server(tmp_path, timeouts={"keepalive_s": 0.3})
    try:
        with RawClient.to(running, timeout=EVENT_WAIT_S) as client:
            client.send(get("/echo/idle"))
            assert client.read_response().body == b"idle"
            started = time.monotonic()
            assert client.read_to_eof() == b""  # closed, and nothing was said
            assert time.monotonic() - started >= 0.15  # not early
    finally:
        running.stop()


def test_keep_alive_connection_in_use_is_not_closed_early(tmp_path):
    running = start_server(tmp_path, timeouts={"keepalive_s": 0.3})
    try:
        with RawClient.to(running) as client:
            for i in range(4):  # each pause is shorter than keepalive_s; their sum is not
                client.send(get(f"/echo/{i}"))
                assert client.read_response().body == str(i).encode()
                time.sleep(0.15)
    finally:
        running.stop()


def test_header_timeout_is_not_reset_by_trickled_bytes(tmp_path):
    running = start_server(tmp_path, timeouts={"header_s": 0.5})
    try:
        with RawClient.to(running, timeout=EVENT_WAIT_S) as client:
            # One byte every 0.05 s, far more often than header_s, for up to EVENT_WAIT_S: a
            # timer reset by each byte would never fire while the bytes keep coming.
            head = b"GET /echo/slowloris HTTP/1.1\r\nX-Slow: "
            trickle = head + b"a" * int(EVENT_WAIT_S / 0.05)
            answered_while_trickling = False
            for byte in trickle:
                if select.select([client.sock], [], [], 0)[0]:
                    answered_while_trickling = True  # the server has answered
                    break
                client.send(bytes([byte]))
                time.sleep(0.05)
            assert answered_while_trickling, "the header timeout never fired"
            response = client.read_response()
            assert response.status == 408
    finally:
        running.stop()


def test_header_timeout_applies_to_a_later_keep_alive_request(tmp_path):
    running = start_server(tmp_path, timeouts={"header_s": 0.4})
    try:
        with RawClient.to(running, timeout=EVENT_WAIT_S) as client:
            client.send(get("/echo/first"))
            assert client.read_response().body == b"first"
            client.send(b"GET /echo/second HTTP/1.1\r\n")
            started = time.monotonic()
            response = client.read_response()
            assert response.status == 408
            assert time.monotonic() - started >= 0.2  # not early
            assert client.is_closed_by_peer()
    finally:
        running.stop()


def _stalled_download(running, files_dir, headers: dict[str, str]) -> bool:  # type: ignore[no-untyped-def]
    """Ask for a big file and never read it; True once the server dropped the connection
    (False if it still holds it after EVENT_WAIT_S, far less than keepalive_s)."""
    with open(files_dir / "huge", "wb") as file:
        file.truncate(64 << 20)  # sparse: far more than the socket buffers hold
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(RAW_TIMEOUT_S)
        sock.connect((running.host, running.port))
        sock.sendall(request_bytes("GET", "/files/huge", headers))
        return wait_until(
            lambda: on_loop(running, lambda: len(running.server.http.connections)) == 0,
            timeout=EVENT_WAIT_S, interval=0.05)
    finally:
        sock.close()


@pytest.mark.parametrize("headers", [
    pytest.param({"Connection": "close"}, id="connection-close"),
    pytest.param({}, id="keep-alive"),
])
def test_stalled_write_is_dropped_after_write_s(tmp_path, files_dir, headers):
    running = start_server(tmp_path, files={"directory": files_dir},
                           timeouts={"write_s": 0.3, "keepalive_s": 30.0})
    try:
        assert _stalled_download(running, files_dir, headers), "the stalled connection was kept"
        line = wait_for_log(running.access_log, lambda x: x["event"] == "rejected")[0]
        assert line["reason"] == "write-timeout"
    finally:
        running.stop()


# ---- handler failures ----------------------------------------------------------------------

def _boom(_request):  # type: ignore[no-untyped-def]
    raise RuntimeError("handler exploded")


@pytest.mark.expect_log("handler-error")
@pytest.mark.parametrize("blocking", [False, True], ids=["inline", "pool"])
def test_handler_exception_answers_500_and_the_server_keeps_serving(running_server, blocking):
    on_loop(running_server, lambda: running_server.server.app.router.get(
        "/boom", _boom, blocking=blocking))
    with RawClient.to(running_server) as client:
        client.send(get("/boom"))
        response = client.read_response()
        assert response.status == 500
        assert response.body.startswith(b"Internal Server Error")
        assert b"exploded" not in response.body  # no internals leak to the client
        client.send(get("/echo/still-here"))  # same connection
        assert client.read_response().body == b"still-here"
    with RawClient.to(running_server) as other:
        other.send(get("/echo/and-here"))
        assert other.read_response().body == b"and-here"
    errors = wait_for_log(running_server.error_log, lambda x: x["event"] == "handler-error")
    assert "handler exploded" in errors[0]["exception"]
    assert errors[0]["path"] == "/boom"


# ---- headers every response carries ----------------------------------------------------------

COMMON_HEADER_REQUESTS = [
    pytest.param(get("/"), 200, id="200"),
    pytest.param(request_bytes("POST", "/files/common", body=b"x"), 201, id="201"),
    pytest.param(request_bytes("OPTIONS", "/echo/x"), 204, id="204"),
    pytest.param(get("/nope"), 404, id="404"),
    pytest.param(request_bytes("DELETE", "/"), 405, id="405"),
    pytest.param(request_bytes("BREW", "/"), 501, id="501"),
    pytest.param(request_bytes("HEAD", "/echo/h"), 200, id="head"),
]


@pytest.mark.parametrize(("request_data", "status"), COMMON_HEADER_REQUESTS)
def test_every_response_has_date_server_and_request_id(running_server, request_data, status):
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    with RawClient.to(running_server) as client:
        client.send(request_data)
        response = client.read_response(head=request_data.startswith(b"HEAD"))
    after = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert response.status == status
    header_date = response.header("date") or ""
    assert IMF_FIXDATE.match(header_date), header_date
    date = datetime.datetime.strptime(header_date, "%a, %d %b %Y %H:%M:%S GMT")
    # the current time (whole seconds, possibly formatted up to a second before the request)
    assert before - datetime.timedelta(seconds=1) <= date <= after
    assert response.header("server") == f"reactor/{__version__}"
    assert re.fullmatch(r"[\w.:@+=/-]{1,128}", response.header("x-request-id") or "")
    assert len(response.headers("date")) == len(response.headers("server")) == 1


@pytest.mark.parametrize("request_id", ["abc-123", "req_7.x:y@z+w=v/u", "A" * 128])
def test_well_formed_request_id_is_echoed(running_server, request_id):
    with RawClient.to(running_server) as client:
        client.send(get("/echo/id", X_Request_ID=request_id))
        assert client.read_response().header("x-request-id") == request_id
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "request")[0]
    assert line["request_id"] == request_id


@pytest.mark.parametrize("request_id", [
    pytest.param("has space", id="space"),
    pytest.param("A" * 129, id="too-long"),
    pytest.param("semi;colon", id="semicolon"),
    pytest.param('quote"d', id="quote"),
    pytest.param("caf\xe9", id="non-ascii"),
    pytest.param("", id="empty"),
])
def test_malformed_request_id_is_replaced(running_server, request_id):
    with RawClient.to(running_server) as client:
        client.send(get("/echo/id", X_Request_ID=request_id))
        replaced = client.read_response().header("x-request-id")
    assert replaced and replaced != request_id.strip()
    assert re.fullmatch(r"[\w.:@+=/-]{1,128}", replaced)


def test_generated_request_ids_are_unique(running_server):
    with RawClient.to(running_server) as client:
        ids = set()
        for _ in range(5):
            client.send(get("/echo/x"))
            ids.add(client.read_response().header("x-request-id"))
    assert len(ids) == 5


# ---- access log ----------------------------------------------------------------------------------

def test_access_log_has_one_line_per_request(running_server):
    before = datetime.datetime.now(datetime.UTC)
    with RawClient.to(running_server) as client:
        started = time.monotonic()
        client.send(get("/echo/logged?x=1&y=2", User_Agent="log-test/1.0"))
        first = client.read_response()
        client.send(get("/missing"))
        second = client.read_response()
        # the first request was over before the second was answered
        window_ms = (time.monotonic() - started) * 1000
        local_port = client.sock.getsockname()[1]
    lines = wait_for_log(running_server.access_log, lambda x: x["event"] == "request", 2)
    after = datetime.datetime.now(datetime.UTC)
    assert len(lines) == 2
    one, two = lines
    assert one["ts"].endswith("Z")
    ts = datetime.datetime.fromisoformat(one["ts"].replace("Z", "+00:00"))
    # stamped while the test ran (bounds from the test's own clock; ts is cut to the ms)
    assert before - datetime.timedelta(milliseconds=1) <= ts <= after
    assert one["remote_addr"] == "127.0.0.1" and one["remote_port"] == local_port
    assert (one["method"], one["path"], one["query"]) == ("GET", "/echo/logged", "x=1&y=2")
    assert one["status"] == 200 and two["status"] == 404
    assert one["bytes_out"] == len(first.raw) and two["bytes_out"] == len(second.raw)
    assert isinstance(one["duration_ms"], float) and 0 <= one["duration_ms"] <= window_ms
    assert one["user_agent"] == "log-test/1.0" and two["user_agent"] is None
    assert one["conn_id"] == two["conn_id"]
    assert (one["request_no"], two["request_no"]) == (1, 2)
    assert (one["keepalive_reuse"], two["keepalive_reuse"]) == (False, True)
    assert one["request_id"] == first.header("x-request-id")
    assert two["query"] == ""


def test_access_log_tells_connections_apart(running_server):
    for _ in range(2):
        with RawClient.to(running_server) as client:
            client.send(get("/"))
            client.read_response()
    lines = wait_for_log(running_server.access_log, lambda x: x["event"] == "request", 2)
    assert lines[0]["conn_id"] != lines[1]["conn_id"]
    assert [line["request_no"] for line in lines] == [1, 1]


def test_head_is_logged_without_body_bytes(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("HEAD", "/echo/abcdef"))
        response = client.read_response(head=True)
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "request")[0]
    assert line["method"] == "HEAD" and line["bytes_out"] == len(response.raw)


def test_a_refused_head_logs_the_request_line_it_had(running_server):
    """A head refused for a bad field after a good request line: the operator still sees what
    was asked (it was logged with method and path null)."""
    with RawClient.to(running_server) as client:
        client.send(b"GET /echo/a?q=1 HTTP/1.1\r\nHost: x\r\nBad Field: v\r\n\r\n")
        assert client.read_response().status == 400
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "rejected")[0]
    assert (line["reason"], line["method"], line["path"]) == ("invalid-field-name", "GET",
                                                              "/echo/a")


def test_a_broken_body_is_answered_under_the_requests_own_id(running_server):
    with RawClient.to(running_server) as client:
        client.send(b"POST /echo/a HTTP/1.1\r\nHost: x\r\nX-Request-ID: body-1\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
        response = client.read_response()
        assert (response.status, response.header("x-request-id")) == (400, "body-1")
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "rejected")[0]
    assert (line["reason"], line["request_id"]) == ("invalid-chunk-size", "body-1")


def _reset(client: RawClient) -> None:
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def test_a_request_abandoned_while_the_app_works_is_logged_499(running_server):
    """nginx's 499 "client closed request": the request reached the app, the client left
    before the answer; without it the access log had no line for the request at all."""
    started, release = threading.Event(), threading.Event()

    def slow(_request):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(10)
        return Response(200, [], b"too late")

    running_server.server.http.app.router.get("/slow", slow, blocking=True)
    client = RawClient.to(running_server)
    client.send(request_bytes("GET", "/slow?x=1", {"X-Request-ID": "gone-1"}))
    assert started.wait(5)
    _reset(client)
    [line] = wait_for_log(running_server.access_log, lambda r: r.get("path") == "/slow")
    assert (line["event"], line["status"], line["bytes_out"]) == ("request", 499, 0)
    assert (line["request_id"], line["query"]) == ("gone-1", "x=1")
    release.set()
    assert fetch(running_server, "GET", "/echo/after")[2] == b"after"
    lines = [r for r in read_log(running_server.access_log) if r.get("path") == "/slow"]
    assert len(lines) == 1  # the late answer adds nothing


def test_a_request_reset_before_a_pool_thread_took_it_is_not_run(tmp_path, files_dir):
    """Clients that reset requests still queued for the pool: each was run all the same
    when a thread came free, its answer thrown away, the live clients queued behind the
    dead ones. They are logged 499 and never run; the live request after them is."""
    running = start_server(tmp_path, server={"pool_threads": 1},
                           files={"directory": files_dir})
    try:
        started, release = threading.Event(), threading.Event()
        ran: list[str] = []

        def blocker(_request):  # type: ignore[no-untyped-def]
            started.set()
            release.wait(10)
            return Response(200, [], b"done")

        def counted(request):  # type: ignore[no-untyped-def]
            ran.append(request.headers.get(b"x-request-id", b"").decode())
            return Response(200, [], b"ran")

        router = running.server.http.app.router
        router.get("/block", blocker, blocking=True)
        router.get("/counted", counted, blocking=True)
        holder = RawClient.to(running)
        holder.send(request_bytes("GET", "/block"))
        assert started.wait(5)  # the pool's only thread is taken
        for index in range(5):
            client = RawClient.to(running)
            client.send(request_bytes("GET", "/counted", {"X-Request-ID": f"gone-{index}"}))
            # queued for the pool (pending: the blocker and this one; those reset before
            # left the queue at their reset)
            assert wait_until(lambda: running.server.loop.pool.pending == 2)
            _reset(client)
            assert wait_until(lambda: running.server.loop.pool.pending == 1)
        assert wait_until(lambda: [r["status"] for r in read_log(running.access_log)
                                   if r.get("path") == "/counted"] == [499] * 5)
        release.set()
        assert holder.read_response().status == 200
        assert fetch(running, "GET", "/counted", headers={"X-Request-ID": "live"})[2] == b"ran"
        assert ran == ["live"]
        holder.close()
    finally:
        running.stop()


def test_a_request_reset_while_queued_for_the_pool_leaves_the_queue_at_once(tmp_path,
                                                                           files_dir):
    """The pool's queue depth (reactor_pool_queue_depth) counted requests whose client had
    reset until a thread came free to skip them: the job is taken back at the reset."""
    running = start_server(tmp_path, server={"pool_threads": 1},
                           files={"directory": files_dir})
    try:
        started, release = threading.Event(), threading.Event()

        def blocker(_request):  # type: ignore[no-untyped-def]
            started.set()
            release.wait(10)
            return Response(200, [], b"done")

        running.server.http.app.router.get("/block", blocker, blocking=True)
        holder = RawClient.to(running)
        holder.send(request_bytes("GET", "/block"))
        assert started.wait(5)  # the pool's only thread is taken
        pool = running.server.loop.pool
        clients = [RawClient.to(running) for _ in range(3)]
        for client in clients:
            client.send(request_bytes("GET", "/block"))
        assert wait_until(lambda: pool.pending == 4)  # the blocker and three queued
        for client in clients:
            _reset(client)
        assert wait_until(lambda: [r["status"] for r in read_log(running.access_log)
                                   if r.get("path") == "/block"] == [499] * 3)
        assert on_loop(running, lambda: pool.pending) == 1  # the blocker only
        release.set()
        assert holder.read_response().status == 200
        assert wait_until(lambda: pool.pending == 0)
        holder.close()
    finally:
        running.stop()


def test_a_reset_mid_body_is_logged_as_a_client_abort(running_server):
    client = RawClient.to(running_server)
    client.send(b"POST /files/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
    time.sleep(0.2)  # the head is read and the body started
    _reset(client)
    [line] = wait_for_log(running_server.access_log, lambda r: r.get("event") == "rejected")
    assert (line["status"], line["reason"], line["path"]) == (499, "client-abort", "/files/x")


@pytest.mark.parametrize("fields", [
    pytest.param(("Content-Length: abc",), id="non-digit-cl"),
    pytest.param(("Content-Length: 5", "Transfer-Encoding: chunked"), id="cl-and-te"),
    pytest.param(("Transfer-Encoding: gzip",), id="te-gzip"),
])
def test_a_head_refused_for_its_framing_is_logged_as_the_request_it_was(running_server, fields):
    # The rejected line names the refused request, not the bytes of the body behind it (it
    # logged method "helloGET", path "/smuggled": a request nobody sent).
    with RawClient.to(running_server) as client:
        client.send(_head("POST /files/x?y HTTP/1.1", "Host: t", *fields)
                    + b"helloGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.read_response().status in (400, 501)
        assert client.is_closed_by_peer()
    line = wait_for_log(running_server.access_log, lambda x: x["event"] == "rejected")[0]
    assert (line["method"], line["path"]) == ("POST", "/files/x")


def test_connections_open_across_a_log_reload_log_to_the_new_log(tmp_path):
    """A reload that changes [log] closes the old log: a keep-alive connection and a
    WebSocket session made before it must write their lines to the new one, not lose them."""
    from tests.wsclient import WsClient

    running = start_server(tmp_path)
    moved = tmp_path / "access2.log"
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/echo/before"))
            assert client.read_response().status == 200
            ws = WsClient(running.host, running.port, "/ws/echo")
            config = running.server.config
            on_loop(running, running.server.apply_config, dataclasses.replace(
                config, log=dataclasses.replace(config.log, access=str(moved))))
            for number in range(3):
                client.send(request_bytes("GET", f"/echo/after{number}"))
                assert client.read_response().status == 200
            ws.send("hi")
            ws.close()
    finally:
        running.stop()
    before = [(line["event"], line["path"]) for line in read_log(running.access_log)]
    assert before == [("request", "/echo/before"), ("request", "/ws/echo")]  # the 101
    after = [(line["event"], line["path"]) for line in read_log(moved)]
    assert sorted(after) == [("request", "/echo/after0"), ("request", "/echo/after1"),
                             ("request", "/echo/after2"), ("websocket", "/ws/echo")]


def test_a_body_in_progress_keeps_its_timeout_across_a_reload(tmp_path):
    """A reload that shortens timeouts.body_s applies from the next request on: an upload
    already arriving finishes under the timeout it began with, as under nginx's old
    workers (it was cut with a 408 by the first gap longer than the new timeout)."""
    files = tmp_path / "files"
    files.mkdir()
    running = start_server(tmp_path, files={"directory": str(files)},
                           timeouts={"body_s": 5.0})
    try:
        with RawClient.to(running) as client:
            client.send(b"POST /files/up HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab")
            assert wait_until(lambda: upload_files(files))  # the upload's file: under way
            config = running.server.config
            on_loop(running, running.server.apply_config, dataclasses.replace(
                config, timeouts=dataclasses.replace(config.timeouts, body_s=0.2)))
            client.send(b"cd")
            time.sleep(0.6)  # longer than the new timeout, far shorter than the old one
            client.send(b"ef")
            assert client.read_response().status == 201
            # the next request is under the new timeout
            client.send(b"POST /files/up HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab")
            assert client.read_response().status == 408
    finally:
        running.stop()
    assert (files / "up").read_bytes() == b"abcdef"
