"""Hosting WSGI apps: a PEP 3333 test app under wsgiref.validate, over real sockets."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest

from reactor.app.types import FileBody, Headers, Offload, Request, Response
from reactor.app.wsgi import WsgiApp
from tests.conftest import (
    RawClient,
    RunningServer,
    fetch,
    free_port,
    on_loop,
    read_log,
    request_bytes,
    start_server,
    wait_for_log,
    wait_until,
)
from tests.ops.serverproc import ServeProcess

StartResponse = Callable[..., Any]


class Features:
    """A WSGI app using every feature; records what the server did to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.closed: list[str] = []
        self.closed_event = threading.Event()
        self.document = tmp_path / "big.bin"
        self.document.write_bytes(bytes(range(256)) * 1024)  # 256 KiB

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        handler = getattr(self, "do_" + path.strip("/").split("/")[0].replace("-", "_"), None)
        if handler is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such page\n"]
        return handler(environ, start_response)  # type: ignore[no-any-return]

    def do_env(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
                "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                "REMOTE_ADDR", "HTTP_X_CUSTOM", "HTTP_COOKIE", "HTTP_X_NOT_SPOOFED", "RAW_URI",
                "REQUEST_URI")
        seen = {key: environ.get(key) for key in keys}
        seen["url_scheme"] = environ["wsgi.url_scheme"]
        seen["multithread"] = environ["wsgi.multithread"]
        seen["body_sha"] = hashlib.sha256(body).hexdigest()
        seen["body_length"] = len(body)
        payload = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(payload)))])
        return [payload]

    def do_write(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first, by write()\n")
        write(b"second, by write()\n")
        return iter([b"then the iterable\n"])

    def do_stream(self, environ: dict[str, Any], start_response: StartResponse
                  ) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return self._pieces("stream", int(environ["QUERY_STRING"] or "3"))

    def _pieces(self, name: str, count: int) -> Iterator[bytes]:
        try:
            for index in range(count):
                yield b""  # empty pieces are allowed and skipped
                yield b"piece %d\n" % index
        finally:
            self.closed.append(name)
            self.closed_event.set()

    def do_errors(self, environ: dict[str, Any], start_response: StartResponse
                  ) -> list[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("the app complains\n")
        errors.writelines(["on two ", "lines\n"])
        errors.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"logged\n"]

    def do_exc_info(self, environ: dict[str, Any], start_response: StartResponse
                    ) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry\n"]

    def do_crash(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("wsgi app exploded")

    def do_upload(self, environ: dict[str, Any], start_response: StartResponse
                  ) -> list[bytes]:
        length = int(environ["CONTENT_LENGTH"])
        digest = hashlib.sha256()
        stream = environ["wsgi.input"]
        left = length
        while left:
            block = stream.read(min(left, 65536))
            if not block:
                break
            digest.update(block)
            left -= len(block)
        payload = json.dumps({"length": length, "sha": digest.hexdigest()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [payload]


def serve_wsgi(tmp_path: Path, app: Any) -> RunningServer:
    running = start_server(tmp_path)
    host = WsgiApp(app, spool_bytes=64 * 1024, on_error=running.server.app_error,
                   server_name="127.0.0.1", server_port=running.port)
    on_loop(running, setattr, running.server.http, "app", host)
    return running


@pytest.fixture
def features(tmp_path: Path) -> Iterator[tuple[Features, RunningServer]]:
    app = Features(tmp_path)
    running = serve_wsgi(tmp_path, validator(app))  # the stdlib checks every call
    yield app, running
    running.stop()
    # nothing failed that a test did not provoke (a wsgiref.validate check would show here)
    assert not [x for x in read_log(running.error_log) if x["level"] == "error"
                and x.get("request_id") != "crash-1"
                and not x.get("message", "").startswith("the app complains")]


def test_environ_is_complete(features: tuple[Features, RunningServer]) -> None:
    _app, running = features
    body = b"a=1&b=2"
    status, headers, raw = fetch(
        running, "POST", "/env/caf%C3%A9%2Fx?q=1&r=%20", body,
        {"Content-Type": "application/x-www-form-urlencoded", "X-Custom": "yes",
         "Cookie": "a=1", "X_Not_Spoofed": "dropped"})
    assert status == 200, raw
    assert headers["Content-Length"] == str(len(raw))
    seen = json.loads(raw)
    assert seen == {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "",
        "PATH_INFO": "café/x".encode().decode("latin-1").join(["/env/", ""]),
        "QUERY_STRING": "q=1&r=%20", "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)), "SERVER_NAME": running.host,
        "SERVER_PORT": str(running.port), "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_X_CUSTOM": "yes", "HTTP_COOKIE": "a=1",
        "HTTP_X_NOT_SPOOFED": None,  # a name with `_` could pose as X-Not-Spoofed
        # the target as sent, %2F kept (gunicorn's RAW_URI, uWSGI's and waitress's REQUEST_URI)
        "RAW_URI": "/env/caf%C3%A9%2Fx?q=1&r=%20", "REQUEST_URI": "/env/caf%C3%A9%2Fx?q=1&r=%20",
        "url_scheme": "http", "multithread": True,
        "body_sha": hashlib.sha256(body).hexdigest(), "body_length": len(body),
    }


def test_chunked_upload_gets_a_content_length_and_a_spooled_input(
        features: tuple[Features, RunningServer]) -> None:
    _app, running = features
    data = bytes(range(256)) * 2048  # 512 KiB: past the 64 KiB spool limit, onto disk
    connection = http.client.HTTPConnection(running.host, running.port, timeout=5)
    try:
        connection.request("PUT", "/upload",
                           body=iter([data[i:i + 50000] for i in range(0, len(data), 50000)]),
                           headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"length": len(data),
                                               "sha": hashlib.sha256(data).hexdigest()}
        connection.request("POST", "/env", body=b"small")  # the same connection
        assert json.loads(connection.getresponse().read())["body_length"] == 5
    finally:
        connection.close()


def test_a_chunked_upload_reaches_the_app_as_a_plain_body(tmp_path: Path) -> None:
    """The server de-chunks the body and sets CONTENT_LENGTH: an HTTP_TRANSFER_ENCODING
    left in the environ made Bottle de-chunk `wsgi.input` again (a 400, "Error while
    parsing chunked transfer body") and werkzeug report no content length."""
    from werkzeug.wsgi import get_content_length

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():  # as Bottle
            size = int(stream.readline().split(b";")[0], 16)  # raises on a plain body
            body = stream.read(size)
        else:
            body = stream.read(int(environ["CONTENT_LENGTH"]))
        payload = json.dumps({"body": body.decode(), "length": get_content_length(environ),
                              "te": environ.get("HTTP_TRANSFER_ENCODING")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [payload]

    running = serve_wsgi(tmp_path, validator(app))
    try:
        connection = http.client.HTTPConnection(running.host, running.port, timeout=5)
        connection.request("POST", "/", body=iter([b"hello", b" world"]),
                           headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status == 200, body
        assert json.loads(body) == {"body": "hello world", "length": 11, "te": None}
    finally:
        running.stop()


def test_write_callable_stream_and_close(features: tuple[Features, RunningServer]) -> None:
    app, running = features
    status, _, body = fetch(running, "GET", "/write")
    assert body == b"first, by write()\nsecond, by write()\nthen the iterable\n"
    status, headers, body = fetch(running, "GET", "/stream?4")
    assert headers["Transfer-Encoding"] == "chunked"
    assert body == b"piece 0\npiece 1\npiece 2\npiece 3\n"
    assert wait_until(lambda: app.closed == ["stream"])
    status, headers, body = fetch(running, "HEAD", "/stream?2")
    assert (status, body) == (200, b"")
    assert wait_until(lambda: app.closed == ["stream", "stream"])  # closed unsent, too


def test_close_runs_when_the_client_goes_away(tmp_path: Path) -> None:
    closed = threading.Event()

    def endless(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        try:
            while True:
                yield b"x" * 65536
        finally:
            closed.set()

    running = serve_wsgi(tmp_path, endless)
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/"))
            client.read_until(b"\r\n\r\n")
            client.read_exactly(200000)
        assert closed.wait(5)
    finally:
        running.stop()


@pytest.mark.expect_log("handler-error")
def test_write_of_something_not_bytes_is_a_logged_500_not_nul_bytes(tmp_path: Path) -> None:
    def writes_an_int(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(5)  # bytes(5) is five NULs: must be refused, not sent
        return []

    running = serve_wsgi(tmp_path, writes_an_int)
    try:
        status, _, body = fetch(running, "GET", "/")
        assert status == 500 and b"\0" not in body
        [line] = [x for x in read_log(running.error_log) if x["level"] == "error"]
        assert "write() takes bytes, not int" in line["exception"]
    finally:
        running.stop()


@pytest.mark.expect_log("handler-error")
@pytest.mark.parametrize("status", ["20", "20 OK", "\uff12\uff10\uff10 OK"])
def test_a_status_without_three_ascii_digits_is_the_apps_error(tmp_path: Path,
                                                               status: str) -> None:
    """"20" was sent on as status 20 and refused by the serializer as "a 1xx is no final
    response"; fullwidth digits ("\\uff12\\uff10\\uff10 OK") went out as 200 OK."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    running = serve_wsgi(tmp_path, app)
    try:
        assert fetch(running, "GET", "/")[0] == 500
        [line] = wait_for_log(running.error_log, lambda x: x["level"] == "error")
        assert line["event"] == "handler-error"
        assert f"bad WSGI status {status!r}" in line["exception"]
    finally:
        running.stop()


@pytest.mark.expect_log("wsgi-errors", "handler-error")
def test_errors_stream_exc_info_and_crash(features: tuple[Features, RunningServer]) -> None:
    _app, running = features
    assert fetch(running, "GET", "/errors")[2] == b"logged\n"
    lines = wait_for_log(running.error_log, lambda x: x["event"] == "wsgi-errors")
    assert lines[0]["message"] == "the app complains\non two lines"
    status, _, body = fetch(running, "GET", "/exc-info")
    assert (status, body) == (503, b"sorry\n")
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/crash", {"X-Request-ID": "crash-1"}))
        response = client.read_response()
        assert response.status == 500 and b"request id: crash-1" in response.body
        client.send(request_bytes("GET", "/write"))  # the connection stays usable
        assert client.read_response().status == 200
    errors = wait_for_log(running.error_log, lambda x: x["event"] == "handler-error")
    assert len(errors) == 1 and "wsgi app exploded" in errors[0]["exception"]


@pytest.mark.expect_log("handler-error")
def test_bytes_written_to_wsgi_errors_are_refused_at_the_call(tmp_path: Path) -> None:
    """wsgi.errors is a text stream: bytes were taken, then broke the flush when the
    response was built, so the 500's traceback (twice over) named the server, not the app's
    line, and the str lines written beside them were lost."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        environ["wsgi.errors"].write(b"bytes, not text\n")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    running = serve_wsgi(tmp_path, app)
    try:
        status, _, _body = fetch(running, "GET", "/")
        assert status == 500
        [line] = wait_for_log(running.error_log, lambda x: x["event"] == "handler-error")
        assert line["exception"].count("Traceback") == 1
        assert "wsgi.errors.write() takes str, not bytes" in line["exception"]
        assert 'environ["wsgi.errors"].write(b"bytes, not text' in line["exception"]
    finally:
        running.stop()


def test_file_wrapper_goes_out_with_sendfile(tmp_path: Path) -> None:
    document = tmp_path / "doc.bin"
    document.write_bytes(bytes(range(256)) * 1024)
    wrappers: list[Any] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        file = open(document, "rb")  # noqa: SIM115 - the wrapper closes it
        file.seek(1000)
        wrapper = environ["wsgi.file_wrapper"](file, 8192)
        wrappers.append(wrapper)
        return wrapper  # type: ignore[no-any-return]

    # The app's answer, as the connection receives it: a file range, for sendfile.
    host = WsgiApp(app)
    offload = host.open(Request("GET", "/doc", "", "1.1", Headers([]))).respond()
    assert isinstance(offload, Offload)
    response = offload.fn(*offload.args)
    assert isinstance(response, Response) and isinstance(response.body, FileBody)
    assert (response.body.offset, response.body.length) == (1000, 256 * 1024 - 1000)
    assert wrappers[0].filelike.closed  # close() was called; the body has its own fd
    response.body.close()
    running = serve_wsgi(tmp_path, app)
    try:
        status, _, body = fetch(running, "GET", "/doc")
        assert status == 200 and body == document.read_bytes()[1000:]
        assert wrappers[1].filelike.closed
    finally:
        running.stop()


def test_a_range_of_a_wrapped_file_seeks_to_it(tmp_path: Path) -> None:
    """werkzeug (Flask's send_file) answers a Range by seeking the iterator over
    wsgi.file_wrapper; reactor's could not seek, so the last 100 bytes of a file cost
    reading (and dropping) all of it, on every request."""
    from flask import Flask, send_file

    data = bytes(range(256)) * 4096  # 1 MiB
    reads: list[int] = []

    class CountingFile(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            block = super().read(size)
            reads.append(len(block))
            return block

    flask_app = Flask(__name__)

    @flask_app.get("/doc")
    def doc() -> Any:
        return send_file(CountingFile(data), mimetype="application/octet-stream")

    running = serve_wsgi(tmp_path, flask_app)
    try:
        status, headers, body = fetch(running, "GET", "/doc", headers={"Range": "bytes=-100"})
        assert status == 206 and body == data[-100:], (status, headers)
        assert headers["Content-Range"] == f"bytes {len(data) - 100}-{len(data) - 1}/{len(data)}"
        assert sum(reads) < 100_000  # a block or two after a seek, not the whole MiB
    finally:
        running.stop()


@pytest.mark.expect_log("stream-error")
def test_exc_info_after_the_head_went_out_aborts_the_response(tmp_path: Path) -> None:
    closed = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"the head is out with this piece\n"
            try:
                raise ValueError("too late to change my mind")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never sent\n"
        finally:
            closed.set()

    running = serve_wsgi(tmp_path, app)
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/", {"X-Request-ID": "late-1"}))
            data = client.read_to_eof()  # the server ends the connection mid-body
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert b"the head is out" in data and b"never sent" not in data
        assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees truncation
        assert closed.wait(5)
        errors = wait_for_log(running.error_log, lambda x: x["event"] == "stream-error")
        assert errors[0]["request_id"] == "late-1"
        assert "too late to change my mind" in errors[0]["exception"]
    finally:
        running.stop()


def test_exc_info_drops_what_write_queued_for_the_response_given_up(tmp_path: Path) -> None:
    """write() output is held until the head is committed; an app that then changes its
    mind (start_response with exc_info) got its partial page glued to the error page."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"<half of the page>")
        try:
            raise ValueError("the template failed")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"error page\n"]

    running = serve_wsgi(tmp_path, validator(app))
    try:
        status, _, body = fetch(running, "GET", "/")
        assert (status, body) == (500, b"error page\n")
    finally:
        running.stop()


class _ClosingBody:
    """A WSGI iterable (not a list, so it streams) that records its `close()` calls and any
    `__next__` after one; `close_gate` makes `close()` block until the test opens it."""

    def __init__(self, pieces: int | None, *, raise_on_close: bool = False) -> None:
        self.left = pieces  # None: endless
        self.raise_on_close = raise_on_close
        self.closes = 0
        self.next_after_close = 0
        self.close_started = threading.Event()
        self.close_gate = threading.Event()
        self.close_gate.set()

    def __iter__(self) -> _ClosingBody:
        return self

    def __next__(self) -> bytes:
        if self.closes:
            self.next_after_close += 1
        if self.left == 0:
            raise StopIteration
        if self.left is not None:
            self.left -= 1
        return b"x" * 65536

    def close(self) -> None:
        self.closes += 1
        self.close_started.set()
        assert self.close_gate.wait(10)
        if self.raise_on_close:
            raise RuntimeError("teardown failed")


def _serve_body(tmp_path: Path, make: Callable[[], _ClosingBody]) -> tuple[RunningServer,
                                                                          list[_ClosingBody]]:
    bodies: list[_ClosingBody] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/fast":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"fast\n"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        bodies.append(make())
        return bodies[-1]

    return serve_wsgi(tmp_path, app), bodies


def test_a_slow_close_runs_in_the_pool_after_the_body(tmp_path: Path) -> None:
    """close() is the app's code: while one blocks, its response is already whole and every
    other connection is served (on the loop it stalled the server, and came before the
    last chunk)."""
    def blocking() -> _ClosingBody:
        body = _ClosingBody(2)
        body.close_gate.clear()
        return body

    running, bodies = _serve_body(tmp_path, blocking)
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/slow"))
            head = client.read_response(head=True)
            assert head.header("transfer-encoding") == "chunked"
            assert client.read_until(b"\r\n0\r\n\r\n").count(b"x") == 2 * 65536
            assert bodies[0].close_started.wait(5)
            assert fetch(running, "GET", "/fast")[2] == b"fast\n"  # while close() blocks
            bodies[0].close_gate.set()
            client.send(request_bytes("GET", "/fast"))  # the connection goes on after it
            assert client.read_response().body == b"fast\n"
        assert bodies[0].closes == 1
    finally:
        running.stop()


@pytest.mark.expect_log("stream-close-error")
def test_a_close_that_raises_is_logged_and_the_connection_goes_on(tmp_path: Path) -> None:
    running, _bodies = _serve_body(tmp_path, lambda: _ClosingBody(1, raise_on_close=True))
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/raises", {"X-Request-ID": "teardown-1"})
                        + request_bytes("GET", "/fast"))
            client.read_response(head=True)
            assert client.read_until(b"\r\n0\r\n\r\n").endswith(b"x\r\n0\r\n\r\n")
            assert client.read_response().body == b"fast\n"  # the pipelined one is answered
        [line] = wait_for_log(running.error_log, lambda x: x["event"] == "stream-close-error")
        assert line["request_id"] == "teardown-1" and "teardown failed" in line["exception"]
    finally:
        running.stop()


class _RaisingCloseList(list[bytes]):
    def close(self) -> None:
        raise RuntimeError("teardown failed")


@pytest.mark.expect_log("stream-close-error")
def test_a_raising_close_of_a_whole_answer_is_logged_and_the_response_stands(
        tmp_path: Path) -> None:
    """A list (or file) answer is closed before it is sent; a close() that raised threw the
    finished response away for a 500 (gunicorn and waitress send it, as reactor does for
    a streamed body), and a file answer's descriptor was left to the garbage collector."""
    document = tmp_path / "doc.bin"
    document.write_bytes(b"f" * 3000)

    class RaisingFile(io.FileIO):
        def close(self) -> None:
            if not self.closed:  # once: not again when collected
                super().close()
                raise RuntimeError("file teardown failed")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/file":
            return environ["wsgi.file_wrapper"](RaisingFile(document))  # type: ignore[no-any-return]
        return _RaisingCloseList([b"the whole page\n"])

    running = serve_wsgi(tmp_path, app)
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/list", {"X-Request-ID": "teardown-2"})
                        + request_bytes("GET", "/file"))
            page = client.read_response()
            assert (page.status, page.body) == (200, b"the whole page\n")
            file = client.read_response()
            assert (file.status, file.body) == (200, b"f" * 3000)
        lines = wait_for_log(running.error_log,
                             lambda x: x["event"] == "stream-close-error", count=2)
        assert lines[0]["request_id"] == "teardown-2"
        assert "teardown failed" in lines[0]["exception"]
        assert "file teardown failed" in lines[1]["exception"]
    finally:
        running.stop()


@pytest.mark.expect_log("wsgi-errors")
def test_what_close_writes_to_wsgi_errors_is_logged_for_a_whole_answer(tmp_path: Path) -> None:
    """A list answer is closed after the head is built, when wsgi.errors was last flushed:
    what its close() wrote (a timing middleware's line, say) never reached the log."""
    class Body(list[bytes]):
        def __init__(self, errors: Any) -> None:
            super().__init__([b"page\n"])
            self.errors = errors

        def close(self) -> None:
            self.errors.write("request done in 3 ms\n")

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(environ["wsgi.errors"])

    running = serve_wsgi(tmp_path, app)
    try:
        assert fetch(running, "GET", "/", headers={"X-Request-ID": "timed-1"})[2] == b"page\n"
        [line] = wait_for_log(running.error_log, lambda x: x["event"] == "wsgi-errors")
        assert (line["request_id"], line["message"]) == ("timed-1", "request done in 3 ms")
    finally:
        running.stop()


def test_write_keeps_working_while_the_iterable_streams(tmp_path: Path) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w1 ")
        yield b"y1 "
        write(b"w2 ")
        write(b"w3 ")
        yield b"y2 "
        write(b"w4")

    running = serve_wsgi(tmp_path, app)
    try:
        assert fetch(running, "GET", "/")[2] == b"w1 y1 w2 w3 y2 w4"
    finally:
        running.stop()


def test_head_of_a_body_the_app_strips_is_framed_as_its_get(tmp_path: Path) -> None:
    """werkzeug answers HEAD with an empty iterable: that says nothing of the GET's length,
    so the HEAD must not claim `Content-Length: 0` (RFC 9110 8.6)."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["REQUEST_METHOD"] != "HEAD":
            yield b"streamed"

    running = serve_wsgi(tmp_path, app)
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/"))
            get = client.read_response(head=True)
            client.read_until(b"\r\n0\r\n\r\n")
            client.send(request_bytes("HEAD", "/") + request_bytes("GET", "/"))
            head = client.read_response(head=True)
            assert head.header("content-length") is None
            assert head.header("transfer-encoding") == get.header("transfer-encoding") \
                == "chunked"
            assert client.read_response(head=True).status == 200  # no stray body between
    finally:
        running.stop()


def test_head_answered_with_an_empty_list_is_framed_as_its_get(tmp_path: Path) -> None:
    """Bottle answers every HEAD with `[]` (and no Content-Length unless it knows the body):
    that was sent as `Content-Length: 0` for a GET that streams, or one of a whole file."""
    document = tmp_path / "doc.bin"
    document.write_bytes(b"x" * 5000)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["REQUEST_METHOD"] == "HEAD":
            return []  # as Bottle: the body dropped, its length unknown
        return environ["wsgi.file_wrapper"](open(document, "rb"))  # type: ignore[no-any-return]

    running = serve_wsgi(tmp_path, app)  # not under validator, which hides that it is a list
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("HEAD", "/") + request_bytes("GET", "/"))
            head = client.read_response(head=True)
            assert head.status == 200
            assert head.header("content-length") is None  # not "0": the GET has 5000 bytes
            get = client.read_response(head=True)  # no stray bytes in between
            assert get.status == 200
    finally:
        running.stop()


def test_the_servers_date_server_and_request_id_are_sent_once(tmp_path: Path) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                                  ("server", "myapp/1.0"), ("X-Request-ID", "app-made")])
        return [b"ok"]

    running = serve_wsgi(tmp_path, app)
    try:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/", {"X-Request-ID": "client-1"}))
            response = client.read_response()
        assert response.body == b"ok"
        assert response.headers("Date") != ["Thu, 01 Jan 1970 00:00:00 GMT"]
        assert len(response.headers("Date")) == 1
        [server] = response.headers("Server")
        assert server.startswith("reactor")
        assert response.headers("X-Request-ID") == ["client-1"]  # the access log's id
    finally:
        running.stop()


WHERE_APP = """
from wsgiref.util import request_uri


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['SERVER_NAME']} {request_uri(environ)}".encode()]
"""


@pytest.mark.usefixtures("ipv6")
def test_server_name_of_an_ipv6_listener_is_bracketed(
        started: list[ServeProcess], tmp_path: Path) -> None:
    # A request without Host (HTTP/1.0: a load balancer's health check) gets the listen host
    # as SERVER_NAME: "[::1]" as RFC 3875 4.1.14 writes it, so PEP 3333's URL reconstruction
    # (SERVER_NAME ":" SERVER_PORT) is "http://[::1]:PORT/", not "http://::1:PORT/".
    (tmp_path / "where.py").write_text(WHERE_APP)
    port = free_port("::1")
    process = ServeProcess(["--no-config", "--host", "::1", "--port", str(port), "--wsgi",
                            "where:app", "--app-dir", str(tmp_path), "--log", "off"],
                           cwd=tmp_path)
    started.append(process)
    assert process.port == port
    with RawClient("::1", port) as client:
        client.send(b"GET /a?b=1 HTTP/1.0\r\n\r\n")
        assert client.read_response().body == f"[::1] http://[::1]:{port}/a?b=1".encode()
    with RawClient("::1", port) as client:  # with a Host, its name as sent
        client.send(request_bytes("GET", "/a", {"Host": f"[::1]:{port}"}))
        assert client.read_response().body == f"[::1] http://[::1]:{port}/a".encode()
