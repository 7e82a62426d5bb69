"""HttpConnection over a socketpair with small apps: the app protocol, framing reconciled by
the serializer, the protocol switch after a 101, and a graceful stop."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from reactor.app.application import App
from reactor.app.types import FunctionApp, Offload, Request, Response, StreamBody
from reactor.conn.interfaces import Transport
from reactor.conn.server import HttpServer
from tests.conn.conftest import TIMEOUT_S, LoopThread, RecordingLog, recv_all, recv_until


def serve(loop_thread: LoopThread, app: Any, sock: socket.socket
          ) -> tuple[HttpServer, RecordingLog]:
    log = RecordingLog()

    def make() -> HttpServer:
        server = HttpServer(loop_thread.loop, app, log)
        sock.setblocking(False)  # as a Listener hands it over
        server.accept(sock, ("127.0.0.1", 40000))
        return server
    return loop_thread.run(make), log


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length-framed response."""
    data = recv_until(sock, b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    assert length is not None, head
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def fields(head: bytes, name: bytes) -> list[bytes]:
    return [line.partition(b":")[2].strip() for line in head.split(b"\r\n")[1:]
            if line.partition(b":")[0].lower() == name]


@pytest.mark.parametrize("bad", [
    Response(200, [], "a str body"),  # type: ignore[arg-type]
    Response(200, [], bytearray(b"x")),  # type: ignore[arg-type]
    Response(99, [], b"x"),
    Response(600, [], b"x"),
    Response(103, [(b"Link", b"</a.css>; rel=preload")]),
    Response(101, [(b"Upgrade", b"toy")]),  # no upgrade protocol to hand over to
    Response(200, [("X-Str", "value")], b"x"),  # type: ignore[list-item]
    Response(404, [(b"X-Str", "value")], b"x"),  # type: ignore[list-item]
    Response("200", [], b"x"),  # type: ignore[arg-type]
    # RFC 9110 5.5: undici and Node's http refuse the whole response ("Invalid header value
    # char") for a CTL other than HTAB in a field value
    Response(200, [(b"X-Color", b"\x1b[31mred")], b"x"),
    Response(404, [(b"X-Color", b"\x1b[31mred")], b"x"),
    Response(200, [(b"X-A", b"a\x7fb")], b"x"),
], ids=["str-body", "bytearray-body", "status-99", "status-600", "status-103", "bare-101",
        "str-header-small", "str-header", "str-status", "esc-in-value-small", "esc-in-value",
        "del-in-value"])
def test_a_response_the_app_got_wrong_is_a_logged_500_and_the_connection_goes_on(
        loop_thread, socket_pair, bad: Response) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return bad if request.path == "/bad" else Response(200, [], b"fine")

    _, log = serve(loop_thread, app, server_side)
    client.sendall(b"GET /bad HTTP/1.1\r\nHost: a\r\nX-Request-ID: bad-1\r\n\r\n")
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 500 ") and body.endswith(b"request id: bad-1\n")
    errors = loop_thread.run(lambda: log.errors)
    assert [(event, fields_["request_id"]) for event, _, fields_ in errors] == [
        ("response-framing", "bad-1")]
    assert loop_thread.run(lambda: loop_thread.errors) == []  # nothing reached the loop
    client.sendall(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(client)[1] == b"fine"


@pytest.mark.parametrize("bad", [
    Response(200, [("X-Str", "value")], b"x"),  # type: ignore[list-item]
    Response(404, [(b"X-Str", "value")], b"x"),  # type: ignore[list-item]
], ids=["small", "general"])
def test_a_str_header_is_named_in_the_logged_error(loop_thread, socket_pair,
                                                  bad: Response) -> None:
    server_side, client = socket_pair
    _, log = serve(loop_thread, lambda request: bad, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(client)[0].startswith(b"HTTP/1.1 500 ")
    [(event, exc, _)] = loop_thread.run(lambda: log.errors)
    assert event == "response-framing" and "X-Str" in str(exc) and "bytes" in str(exc), exc


class OpenRaises:
    """An Application whose `open` fails at head time (a router or a middleware's bug)."""

    def open(self, request: Request) -> Any:
        if request.path == "/fine":
            return FunctionApp(lambda request: Response(200, [], b"fine")).open(request)
        raise LookupError("open exploded")


@pytest.mark.parametrize("body", [b"", b"hello"], ids=["no-body", "body"])
def test_an_app_whose_open_raises_answers_a_logged_500_and_the_connection_goes_on(
        loop_thread, socket_pair, body: bytes) -> None:
    server_side, client = socket_pair
    _, log = serve(loop_thread, OpenRaises(), server_side)
    client.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nX-Request-ID: open-1\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    head, answer = read_response(client)
    assert head.startswith(b"HTTP/1.1 500 ")
    assert answer == b"Internal Server Error\nrequest id: open-1\n"
    errors = loop_thread.run(lambda: log.errors)
    assert [(event, type(exc), fields_["request_id"]) for event, exc, fields_ in errors] == [
        ("handler-error", LookupError, "open-1")]
    assert loop_thread.run(lambda: loop_thread.errors) == []  # nothing reached the loop
    if not body:  # after a 500 with the body read, the connection is still usable
        client.sendall(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(client)[1] == b"fine"


@pytest.mark.parametrize(("target", "host", "path", "query"), [
    (b"http://a.example/x?q=1", b"a.example", "/x", "q=1"),
    (b"HTTPS://A.example:8443", b"A.example:8443", "/", ""),
    (b"http://a.example?next=/b", b"a.example", "/", "next=/b"),
    (b"http://[::1]:8080/y", b"[::1]:8080", "/y", ""),
])
def test_an_absolute_form_target_is_the_host_the_app_sees(loop_thread, socket_pair, target,
                                                          host, path, query) -> None:
    # RFC 9112 3.2.2: the origin server "MUST ignore the received Host header field" and use
    # the target's authority instead; the path and query are the rest of the target.
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        seen = [request.headers[b"host"], request.path.encode(), request.query.encode()]
        return Response(200, [], b"|".join(seen))

    serve(loop_thread, app, server_side)
    client.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: b.example\r\n\r\n")
    _, body = read_response(client)
    assert body == b"|".join([host, path.encode(), query.encode()])


def test_a_handler_that_sets_content_length_sends_exactly_one(loop_thread, socket_pair
                                                               ) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [(b"Content-Length", b"5"), (b"Content-Type", b"text/plain")],
                        b"hello")

    serve(loop_thread, app, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = read_response(client)
    assert fields(head, b"content-length") == [b"5"] and body == b"hello"


def test_a_content_length_that_disagrees_is_a_logged_500(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [(b"Content-Length", b"50")], b"short")

    _, log = serve(loop_thread, app, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: framing-1\r\n\r\n")
    head, body = read_response(client)
    # the body is the 500 every fault gets: the request id that finds the error line
    assert head.startswith(b"HTTP/1.1 500 ")
    assert body == b"Internal Server Error\nrequest id: framing-1\n"
    errors = loop_thread.run(lambda: log.errors)
    assert [(event, fields_["request_id"]) for event, _, fields_ in errors] == [
        ("response-framing", "framing-1")]
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # the connection still works
    assert read_response(client)[0].startswith(b"HTTP/1.1 500 ")


def test_hop_by_hop_fields_from_the_app_are_not_passed_through(loop_thread, socket_pair
                                                                ) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [(b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"x"),
                              (b"Connection", b"keep-alive"), (b"X-Mine", b"1")], b"abc")

    serve(loop_thread, app, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = read_response(client)
    assert body == b"abc" and fields(head, b"x-mine") == [b"1"]
    for name in (b"transfer-encoding", b"keep-alive", b"connection"):
        assert fields(head, name) == [], name


@pytest.mark.parametrize("request_bytes", [
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
])
def test_a_plain_function_app_receives_request_bodies(loop_thread, socket_pair,
                                                      request_bytes: bytes) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [], b"got " + request.body)

    serve(loop_thread, app, server_side)
    client.sendall(request_bytes)
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"got hello world"


class Shouter:
    """A toy protocol: answers every read with the bytes upper-cased."""

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self.received: list[bytes] = []
        self.stopped = threading.Event()

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        assert self.transport is not None
        self.transport.write(data.upper())

    def eof_received(self) -> None:
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.stopped.set()

    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def write_blocked(self) -> None: ...

    def shutdown(self) -> None:
        assert self.transport is not None
        self.transport.close()


def test_a_toy_protocol_switched_in_after_101_gets_the_bytes_after_the_head(
        loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    shouter = Shouter()

    def app(request: Request) -> Response:
        return Response(101, [(b"Upgrade", b"shout")], upgrade=lambda: shouter)

    server, log = serve(loop_thread, app, server_side)
    client.sendall(b"GET /shout HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                   b"Upgrade: shout\r\n\r\nhello right after the head")
    data = recv_until(client, b"HELLO RIGHT AFTER THE HEAD")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert fields(head, b"upgrade") == [b"shout"]
    assert fields(head, b"connection") == [b"upgrade"]
    assert fields(head, b"content-length") == [] and rest == b"HELLO RIGHT AFTER THE HEAD"
    client.sendall(b"more")
    assert recv_until(client, b"MORE") == b"MORE"
    assert loop_thread.run(lambda: shouter.received) == [b"hello right after the head",
                                                         b"more"]
    # The registry knows the switched connection: a graceful stop reaches the new protocol.
    assert loop_thread.run(lambda: len(server.connections)) == 1
    loop_thread.run(server.shutdown_connections)
    assert shouter.stopped.wait(TIMEOUT_S)
    assert loop_thread.run(lambda: len(server.connections)) == 0
    assert [r.response.status for r in loop_thread.run(lambda: log.requests)] == [101]


def test_middleware_wraps_offloaded_handlers_exactly_once(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    app = App()
    text = b"compress me, I came from the pool " * 400
    calls: list[str] = []

    def in_pool() -> Response:
        calls.append(threading.current_thread().name)
        return Response(200, [(b"Content-Type", b"text/plain; charset=utf-8")], text)

    def handler(request: Request) -> Offload:
        return Offload(in_pool)

    app.router.get("/pooled", handler)
    serve(loop_thread, app, server_side)
    client.sendall(b"GET /pooled HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n")
    head, body = read_response(client)
    assert fields(head, b"content-encoding") == [b"gzip"]
    assert fields(head, b"vary") == [b"Accept-Encoding"]
    assert gzip.decompress(body) == text
    assert calls and calls[0] != "test-loop"  # it did run in the pool


def stream_of(pieces: list[bytes]) -> Callable[[], bytes]:
    remaining = list(pieces)
    return lambda: remaining.pop(0) if remaining else b""


def test_a_stream_of_announced_length_goes_out_unchunked(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [(b"Content-Length", b"10")],
                        StreamBody(stream_of([b"01234", b"56789"])))

    serve(loop_thread, app, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = read_response(client)
    assert fields(head, b"transfer-encoding") == [] and body == b"0123456789"


def test_a_stream_longer_than_its_content_length_is_cut_and_logged(loop_thread, socket_pair
                                                                    ) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [(b"Content-Length", b"4")],
                        StreamBody(stream_of([b"0123", b"extra"])))

    _, log = serve(loop_thread, app, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    data = recv_all(client)  # the connection ends; the client never reads a bogus next head
    assert data.endswith(b"\r\n\r\n0123")
    assert [event for event, _, _ in loop_thread.run(lambda: log.errors)] == ["stream-error"]


def test_a_graceful_stop_answers_a_request_already_sent(loop_thread, socket_pair) -> None:
    """The request is in the socket but not read yet when the stop comes (issue 9, #3)."""
    server_side, client = socket_pair
    log = RecordingLog()
    gate = threading.Event()

    def app(request: Request) -> Response:
        return Response(200, [], b"answered")

    def accept_paused() -> HttpServer:
        server = HttpServer(loop_thread.loop, app, log)
        server_side.setblocking(False)  # as a Listener hands it over
        server.accept(server_side, ("127.0.0.1", 40000))
        for transport in server.connections:
            transport.pause_reading()  # as if the loop had not got to it yet
        return server

    server = loop_thread.run(accept_paused)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    loop_thread.run(server.shutdown_connections)
    gate.set()
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"answered"
    assert fields(head, b"connection") == [b"close"]
    assert recv_all(client) == b""


def test_a_graceful_stop_gives_a_silent_new_connection_a_grace(loop_thread, socket_pair
                                                                ) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [], b"late but answered")

    server, _ = serve(loop_thread, app, server_side)
    loop_thread.run(server.shutdown_connections)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # arrives after the stop began
    head, body = read_response(client)
    assert body == b"late but answered" and fields(head, b"connection") == [b"close"]


# ---- rejected requests correlate with what the client saw (issue 9, defect 6) ------------


def serve_with(loop_thread: LoopThread, sock: socket.socket, **settings: float
               ) -> RecordingLog:
    from reactor.conn.shared import HttpSettings
    log = RecordingLog()

    def make() -> None:
        server = HttpServer(loop_thread.loop, lambda request: Response(200), log,
                            settings=HttpSettings(**settings))  # type: ignore[arg-type]
        sock.setblocking(False)  # as a Listener hands it over
        server.accept(sock, ("127.0.0.1", 40000))
    loop_thread.run(make)
    return log


def rejected(loop_thread: LoopThread, log: RecordingLog) -> list[dict[str, Any]]:
    assert wait_for(lambda: loop_thread.run(lambda: list(log.rejected_lines)))
    return loop_thread.run(lambda: list(log.rejected_lines))


def wait_for(predicate: Callable[[], Any]) -> Any:
    import time
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.01)
    return None


def test_a_rejected_line_carries_the_request_id_of_the_error_response(loop_thread,
                                                                       socket_pair) -> None:
    server_side, client = socket_pair
    log = serve_with(loop_thread, server_side)
    client.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
    head, _ = read_response(client)
    assert head.startswith(b"HTTP/1.1 400 ")
    [line] = rejected(loop_thread, log)
    assert line["request_id"] == fields(head, b"x-request-id")[0].decode()


def test_a_header_timeout_names_the_request_line_that_arrived(loop_thread, socket_pair
                                                              ) -> None:
    server_side, client = socket_pair
    log = serve_with(loop_thread, server_side, header_s=0.2)
    client.sendall(b"GET /slow/path?q=1 HTTP/1.1\r\nHost: a\r\n")  # the head never ends
    head, _ = read_response(client)
    assert head.startswith(b"HTTP/1.1 408 ")
    [line] = rejected(loop_thread, log)
    assert (line["status"], line["reason"], line["method"], line["path"]) == (
        408, "header-timeout", "GET", "/slow/path")
    assert line["request_id"] == fields(head, b"x-request-id")[0].decode()


def test_a_client_abort_names_the_request_line_that_arrived(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    log = serve_with(loop_thread, server_side)
    client.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\n")
    client.shutdown(socket.SHUT_WR)
    [line] = rejected(loop_thread, log)
    assert (line["status"], line["reason"], line["method"], line["path"]) == (
        499, "client-abort", "POST", "/upload")


def test_a_client_abort_during_the_body_names_the_request_and_its_id(loop_thread,
                                                                      socket_pair) -> None:
    server_side, client = socket_pair
    log = serve_with(loop_thread, server_side)
    client.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc-123\r\n"
                   b"Content-Length: 100\r\n\r\nonly part")
    client.shutdown(socket.SHUT_WR)
    [line] = rejected(loop_thread, log)
    assert (line["status"], line["method"], line["path"], line["request_id"]) == (
        499, "POST", "/upload", "abc-123")


def test_a_header_value_that_would_split_the_response_is_a_logged_500(loop_thread,
                                                                      socket_pair) -> None:
    server_side, client = socket_pair

    def app(request: Request) -> Response:
        return Response(200, [(b"X-Evil", b"a\r\nSet-Cookie: stolen=1")], b"never sent")

    _, log = serve(loop_thread, app, server_side)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _ = read_response(client)
    assert head.startswith(b"HTTP/1.1 500 ") and b"stolen" not in head
    assert [event for event, _, _ in loop_thread.run(lambda: log.errors)] == [
        "response-framing"]


def test_an_inline_handler_calling_sys_exit_is_a_logged_500_not_the_servers_stop(
        loop_thread, socket_pair) -> None:
    """`sys.exit()` in an inline handler (or one a library calls, argparse on bad input)
    left the loop: the server stopped, exit code 0, every connection dropped, nothing in
    the error log. In the pool the same handler was already a logged 500."""
    import sys

    server_side, client = socket_pair
    app = App()

    @app.get("/exit", inline=True)
    def leave(request: Request) -> Response:
        sys.exit(3)

    @app.post("/upload", stream=True)  # a stream route's handler runs at head time
    def upload(request: Request) -> Response:
        sys.exit(4)

    app.get("/fine", inline=True)(lambda request: Response(200, [], b"fine"))
    _, log = serve(loop_thread, app, server_side)
    client.sendall(b"GET /exit HTTP/1.1\r\nHost: a\r\nX-Request-ID: exit-1\r\n\r\n")
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 500 ") and body.endswith(b"request id: exit-1\n")
    client.sendall(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(client)[1] == b"fine"
    client.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Request-ID: exit-2\r\n"
                   b"Content-Length: 5\r\n\r\nhello")
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 500 ") and body.endswith(b"request id: exit-2\n")
    errors = loop_thread.run(lambda: log.errors)
    assert [(event, type(exc), fields_["request_id"]) for event, exc, fields_ in errors] == [
        ("handler-error", SystemExit, "exit-1"), ("handler-error", SystemExit, "exit-2")]
    assert loop_thread.run(lambda: loop_thread.errors) == []  # nothing reached the loop


def held_in_pool(release: threading.Event) -> Offload:
    """`/pooled`'s answer: a pool job that waits for `release` (the test decides when the
    pool is done)."""
    def slow() -> Response:
        release.wait(5)
        return Response(200, [], b"pooled")
    return Offload(slow)


def test_a_pass_that_yields_behind_a_pooled_request_reads_again_after_it(
        loop_thread, socket_pair) -> None:
    """A pass stops after REQUESTS_PER_PASS answers and pauses reading until its next turn;
    when the last of them went to the pool, that turn found the connection busy and
    returned: the pipelined rest was answered when the pool was done, but reading stayed
    paused, and the client's next request was never read."""
    from reactor.conn.http import REQUESTS_PER_PASS
    server_side, client = socket_pair
    client.settimeout(3)
    release = threading.Event()

    def app(request: Request) -> Response | Offload:
        return held_in_pool(release) if request.path == "/pooled" else Response(200, [], b"inline")

    def bodies(count: int) -> list[bytes]:
        data = b""
        while data.count(b"HTTP/1.1 200 ") < count or not data.endswith((b"inline", b"pooled")):
            data += client.recv(65536)
        return [answer.rpartition(b"\r\n\r\n")[2] for answer in data.split(b"HTTP/1.1 ")[1:]]

    serve(loop_thread, app, server_side)
    inline = b"GET /inline HTTP/1.1\r\nHost: a\r\n\r\n"
    client.sendall(inline * (REQUESTS_PER_PASS - 1)
                   + b"GET /pooled HTTP/1.1\r\nHost: a\r\n\r\n" + inline * 3)
    assert bodies(REQUESTS_PER_PASS - 1) == [b"inline"] * (REQUESTS_PER_PASS - 1)
    loop_thread.run(lambda: None)  # the yielded pass's next turn has run (busy: it returned)
    release.set()
    assert bodies(4) == [b"pooled"] + [b"inline"] * 3
    client.sendall(inline)  # sent after all that: read only if reading was resumed
    assert bodies(1) == [b"inline"]


def test_input_held_back_behind_a_pooled_request_is_read_once_it_is_done(
        loop_thread, socket_pair) -> None:
    """While a request is in the pool, reading stops once 256 KiB wait behind it; when it is
    done the waiting request is handled, and the rest of its body must be read too."""
    server_side, client = socket_pair
    client.settimeout(5)
    release = threading.Event()

    def app(request: Request) -> Response | Offload:
        if request.path == "/pooled":
            return held_in_pool(release)
        return Response(200, [], str(len(request.body)).encode())

    serve(loop_thread, app, server_side)
    size = 1024 * 1024  # far more than the 256 KiB read while busy
    client.sendall(b"GET /pooled HTTP/1.1\r\nHost: a\r\n\r\n"
                   + b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
    sender = threading.Thread(target=client.sendall, args=(b"x" * size,))
    sender.start()
    time.sleep(0.2)  # the kernel buffers fill; the server stops reading past its mark
    release.set()
    data = b""
    while data.count(b"HTTP/1.1 200 ") < 2 or not data.endswith(str(size).encode()):
        data += client.recv(65536)
    sender.join(5)
    assert data.startswith(b"HTTP/1.1 200 ") and b"pooled" in data
