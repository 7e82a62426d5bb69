"""Hosting a WSGI (PEP 3333) application: Flask, Django, anything callable(environ, start_response).

Strategy: `WsgiApp` is an `Application`. Every request runs the WSGI app on a worker thread
(an `Offload`); a body larger than `spool_bytes` or chunked is first written to a `Spool`
as it arrives (through an `Upload`, so the loop never holds it), and `wsgi.input` reads the
buffered bytes or the spool, with CONTENT_LENGTH set to the real length even when the
client sent it chunked (and no HTTP_TRANSFER_ENCODING). The app's iterable is consumed on
the worker up to the first non-empty piece (so `start_response` has been called), then:
- a list or tuple, or an iterable that ends early, becomes one bytes body;
- `wsgi.file_wrapper` over a real file becomes a `FileBody` (sendfile, or the TLS path);
- anything else becomes a `StreamBody`: the rest is produced piece by piece in the pool,
  one piece in flight and paused while the client is slow.
The iterable's `close()` is always called: at once for a bytes or file body, else by the
`StreamBody` when the body is done with (sent, failed, or the client went away); one that
raises is logged (`stream-close-error`) and the response stands.
`write()` pieces are kept in order in front of the iterable's pieces. What the app writes to
`wsgi.errors` goes to the error log (event "wsgi-errors", one per flush). An exception
before the head is committed is a 500 naming the request id with one logged traceback (an
OSError of a resource shortage, EMFILE say, a 503 with one line: `handlers.unavailable`);
`start_response(..., exc_info)` before the head is committed replaces status and headers
and drops what `write()` queued; after, it re-raises, which aborts the response.
"""

from __future__ import annotations

import contextvars
import io
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

from reactor.app.handlers import is_shortage, print_error, unavailable
from reactor.app.spool import SpoolThenRun
from reactor.app.types import (
    FileBody,
    Offload,
    Request,
    Response,
    StreamBody,
    Upload,
    internal_error,
)

SPOOL_BYTES = 1024 * 1024
WsgiCallable = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ErrorHook = Callable[[str, BaseException | None, dict[str, Any]], None]
# CONTENT_TYPE and CONTENT_LENGTH carry these; the body is de-chunked before the app runs
# (CONTENT_LENGTH is its real length), so a Transfer-Encoding would tell the app to de-chunk
# it again (Bottle does) or to ignore CONTENT_LENGTH (werkzeug does): waitress drops it too.
_SKIPPED = frozenset({b"content-type", b"content-length", b"transfer-encoding"})


class WsgiApp:
    """Serve the WSGI callable `app`. `on_error(event, exc, fields)` receives failures and
    `wsgi.errors` lines (thread-safe; set by the server); `multiprocess` says whether
    several worker processes serve it (`wsgi.multiprocess`)."""

    def __init__(self, app: WsgiCallable, *, spool_bytes: int = SPOOL_BYTES,
                 on_error: ErrorHook | None = None, multiprocess: bool = False,
                 server_name: str = "localhost", server_port: int = 80) -> None:
        self.app = app
        self.spool_bytes = spool_bytes
        self.on_error = on_error
        self.multiprocess = multiprocess
        # RFC 3875 4.1.14: SERVER_NAME = hostname | ipv4-address | "[" ipv6-address "]", as a
        # Host's name is: PEP 3333's URL reconstruction (and Django's get_host) append
        # ":" SERVER_PORT to it, which an unbracketed "::1" would run into.
        if ":" in server_name and not server_name.startswith("["):
            server_name = f"[{server_name}]"
        self.server_name = server_name
        self.server_port = server_port

    def open(self, request: Request) -> WsgiDispatch:
        return WsgiDispatch(self, request)

    def report(self, event: str, fields: dict[str, Any]) -> None:
        """An expected failure (a resource shortage): one line, no traceback."""
        if self.on_error is not None:
            self.on_error(event, None, fields)
        else:
            print_error(event, fields)


class WsgiDispatch:
    """One request through a `WsgiApp` (see the `Dispatch` protocol)."""

    __slots__ = ("host", "request")

    def __init__(self, host: WsgiApp, request: Request) -> None:
        self.host = host
        self.request = request

    def begin(self) -> Upload | Response | None:
        length = self.request.headers.get(b"content-length")
        if length is None or int(length) > self.host.spool_bytes:
            return SpoolThenRun(self.request, self.host.spool_bytes, self.run, self.host.report)
        return None

    def respond(self) -> Response | Offload:
        return Offload(self.run)

    def complete(self, response: Response) -> Response | Offload:
        return response

    def run(self) -> Response:
        """On a worker: call the app and turn its answer into a Response."""
        request = self.request
        call = _Call(self.host, request)
        try:
            return call.run()
        except Exception as exc:
            call.errors.flush()
            if self.host.on_error is None:
                raise
            if is_shortage(exc):  # out of fds or memory: the server's state, not a bug
                return unavailable(exc, exc.filename, request, self.host.report)
            self.host.on_error("handler-error", exc, {
                "request_id": request.request_id, "conn_id": request.conn_id,
                "method": request.method, "path": request.path})
            return internal_error(request)


class ErrorStream:
    """`wsgi.errors`: text written here reaches the error log, one event per `flush()` (a
    logging handler's record, a traceback included, stays one event), and whatever is
    left at the end of the request."""

    _MAX_PENDING = 64 * 1024

    def __init__(self, hook: ErrorHook | None, request_id: str) -> None:
        self._hook = hook
        self._request_id = request_id
        self._pending: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # refused at the app's call, as a text file does
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        self._pending.append(text)
        self._size += len(text)
        if self._size > self._MAX_PENDING:
            self.flush()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending).rstrip("\n")
        self._pending = []
        self._size = 0
        if not text:
            return
        if self._hook is None:
            sys.stderr.write(text + "\n")
        else:
            self._hook("wsgi-errors", None, {"request_id": self._request_id, "message": text})


class FileWrapper:
    """`wsgi.file_wrapper`: iterates a file in blocks; served with sendfile when the file
    is a regular file with a descriptor. Its own iterator (as wsgiref's), seekable when the
    file is (as werkzeug's): werkzeug answers a Range by seeking the iterator it wraps, and
    without `seek` reads and drops every byte before the range."""

    def __init__(self, filelike: Any, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        block: bytes = self.filelike.read(self.block_size)
        if not block:
            raise StopIteration
        return block

    def seekable(self) -> bool:
        seekable = getattr(self.filelike, "seekable", None)
        return bool(seekable()) if seekable is not None else False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return int(self.filelike.seek(offset, whence))

    def tell(self) -> int:
        return int(self.filelike.tell())

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def _first_piece(iterator: Iterator[Any]) -> Any:
    for piece in iterator:
        if piece:
            return piece
    return b""


class _Call:
    """One call of the WSGI app: environ, start_response, write, and the answer."""

    def __init__(self, host: WsgiApp, request: Request) -> None:
        self.host = host
        self.request = request
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.written: list[bytes] = []
        self.committed = False  # the head went to the connection
        self.errors = ErrorStream(host.on_error, request.request_id)
        self.context = contextvars.Context()

    # ---- environ ----------------------------------------------------------------------
    def environ(self) -> dict[str, Any]:
        request = self.request
        host = self.host
        path = request.path
        if path == "*":
            path_info = "*"
        else:
            path_info = (unquote_to_bytes(path) if "%" in path
                         else path.encode("latin-1")).decode("latin-1")
        length = request.body_length()
        server_name, server_port = host.server_name, str(host.server_port)
        host_field = request.headers.get(b"host")
        if host_field:
            text = host_field.decode("latin-1")
            if text.startswith("["):
                name, _, rest = text.partition("]")
                name, port = name + "]", rest[1:] if rest.startswith(":") else ""
            else:
                name, _, port = text.partition(":")
            server_name = name
            server_port = port if port.isdigit() else (
                "443" if request.scheme == "https" else "80")
        # The target as sent, its escapes kept (PATH_INFO has them decoded, so "%2F" and "/"
        # look alike there): gunicorn's RAW_URI, uWSGI's and waitress's REQUEST_URI.
        raw_uri = f"{path}?{request.query}" if request.query else path
        environ: dict[str, Any] = {
            "RAW_URI": raw_uri,
            "REQUEST_URI": raw_uri,
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path_info,
            "QUERY_STRING": request.query,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "REMOTE_ADDR": request.client_addr,
            "REMOTE_PORT": str(request.remote_port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": request.scheme,
            "wsgi.input": request.stream() if request.body_file is not None
            else io.BytesIO(request.body),
            "wsgi.input_terminated": True,
            "wsgi.errors": self.errors,
            "wsgi.multithread": True,
            "wsgi.multiprocess": host.multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "reactor.request_id": request.request_id,
            "reactor.request": request,
        }
        content_type = request.headers.get(b"content-type")
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type.decode("latin-1")
        if length or b"content-length" in request.headers or b"transfer-encoding" in \
                request.headers:
            environ["CONTENT_LENGTH"] = str(length)
        for field, raw in request.headers:
            if field in _SKIPPED or b"_" in field:  # `_` names could pose as `-` ones
                continue
            key = "HTTP_" + field.decode("latin-1").upper().replace("-", "_")
            text = raw.decode("latin-1")
            if key in environ:
                text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
            environ[key] = text
        return environ

    # ---- start_response ------------------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
            # Nothing went out yet: what write() queued belongs to the response given up.
            self.written.clear()
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        code = status[:3]
        if not (isinstance(status, str) and len(code) == 3 and code.isascii()
                and code.isdigit() and status[3:4] in (" ", "")):  # not "20", not fullwidth
            raise ValueError(f"bad WSGI status {status!r}")
        fields = []
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"WSGI header ({name!r}, {value!r}) must be two str")
            fields.append((name.encode("latin-1"), value.encode("latin-1")))
        self.status = int(code)
        self.headers = fields
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response")
        if not isinstance(data, bytes | bytearray):  # bytes(5) would be five NULs
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if data:
            self.written.append(bytes(data))

    # ---- the answer --------------------------------------------------------------------
    def run(self) -> Response:
        # The app, each later piece and close() run in one context, whichever worker runs
        # them (one at a time): frameworks keep request state in context variables.
        context = self.context = contextvars.copy_context()
        result = context.run(self.host.app, self.environ(), self.start_response)
        streaming = False
        try:
            if isinstance(result, FileWrapper):
                body = self._file_body(result)
                if body is not None:
                    return self._response(body)
            if isinstance(result, list | tuple) and (
                    any(result) or self.written or not self._stripped_head()):
                pieces = [*self.written, *result]
                self._check_pieces(pieces)
                return self._response(b"".join(pieces))
            iterator = context.run(iter, result)
            piece = context.run(_first_piece, iterator)
            if piece or (not self.written and self._stripped_head()):
                # A HEAD answered by an app that strips the body (werkzeug returns an empty
                # iterable, Bottle an empty list) is framed as the GET's stream would be, not
                # as an empty body (Content-Length: 0 would misstate the GET's length: RFC
                # 9110 8.6).
                if piece:
                    self._check_pieces([piece])
                    self.written.append(bytes(piece))
                response = self._response(self._stream(iterator, result))
                streaming = True
                return response
            return self._response(b"".join(self.written))
        finally:
            if not streaming:  # else the StreamBody closes it once the body is done with
                self._close_held(result)

    def _response(self, body: Any) -> Response:
        if self.status is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
        self.errors.flush()
        self.committed = True
        return Response(self.status, self.headers, body)

    @staticmethod
    def _check_pieces(pieces: list[Any]) -> None:
        for piece in pieces:
            if not isinstance(piece, bytes | bytearray):
                raise TypeError(f"a WSGI app yielded {type(piece).__name__}, not bytes")

    def _file_body(self, wrapper: FileWrapper) -> FileBody | None:
        if self.written:
            return None
        try:
            fd = wrapper.filelike.fileno()
            info = os.fstat(fd)
            offset = wrapper.filelike.tell()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        length = max(0, info.st_size - offset)
        for name, value in self.headers:
            if name.lower() == b"content-length" and value.isdigit():
                length = min(length, int(value))
        file: BinaryIO = open(os.dup(fd), "rb", buffering=0)  # noqa: SIM115 - body owns it
        return FileBody(file, offset, length)

    def _stripped_head(self) -> bool:
        """A HEAD whose length the app did not say: an empty answer says nothing of it."""
        return self.request.method == "HEAD" and not any(
            name.lower() == b"content-length" for name, _ in self.headers)

    def _stream(self, iterator: Iterator[Any], result: Any) -> StreamBody:
        # `write()` keeps working while the body streams: what it queues (in `written`)
        # goes out before the piece the iterator yields after it, as in gunicorn and wsgiref.
        written = self.written
        context = self.context

        def next_piece() -> bytes:
            for piece in iterator:
                if piece:
                    if not isinstance(piece, bytes | bytearray):
                        raise TypeError(f"a WSGI app yielded {type(piece).__name__}, not bytes")
                    return bytes(piece)
            return b""

        def produce() -> bytes:
            if not written:
                piece = context.run(next_piece)
                if not written:
                    return piece
                if piece:
                    written.append(piece)
            data = b"".join(written)
            written.clear()
            return data

        def close() -> None:
            try:
                context.run(self._close, result)
            finally:
                self.errors.flush()
        return StreamBody(produce, close)

    def _close_held(self, result: Any) -> None:
        """close() of an answer held whole (or of one that failed): the app's teardown, as
        a streamed body's close() after its last chunk. One that raises is logged the same
        way (`stream-close-error`) and the response the app made stands; what it wrote to
        `wsgi.errors` is flushed after it, as a stream's."""
        try:
            self.context.run(self._close, result)
        except Exception as exc:
            if self.host.on_error is None:
                raise
            request = self.request
            self.host.on_error("stream-close-error", exc, {
                "request_id": request.request_id, "conn_id": request.conn_id,
                "method": request.method, "path": request.path})
        finally:
            self.errors.flush()

    @staticmethod
    def _close(result: Any) -> None:
        close = getattr(result, "close", None)
        if close is not None:
            close()
