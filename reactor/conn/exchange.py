"""One request exchange on an HTTP connection: the request, its body, the app, the response.

Strategy: an `Exchange` lives from a request head to the moment its response is queued. It
asks the app's `Dispatch` at head time whether the body streams into an `Upload` (driven by
an `UploadPump`) or is buffered, runs the app at the end of the message (inline, or through
the pool for an `Offload`), and writes the response: framing is decided by the sans-IO
serializer (`frame_response`), head and small body leave in one write, files by sendfile,
a `StreamBody` piece by piece (`BodyStreamer`). It then hands back to its connection
(`exchange_done`), which owns keep-alive, timeouts and what happens next. The connection
tells it when the peer is gone (`cancel`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from reactor.app.types import (
    Dispatch,
    FileBody,
    FileTruncated,
    Offload,
    PartsBody,
    Request,
    Response,
    StreamBody,
    Upload,
    UploadRefused,
    internal_error,
)
from reactor.conn.clock import server_lines
from reactor.conn.shared import APP_ERRORS, AccessRecord
from reactor.conn.stream import BodyStreamer, close_in_pool
from reactor.conn.upload import UploadPump
from reactor.proto import CONTINUE_100, LocalProtocolError, RequestHead, status_line
from reactor.proto.framing import CLOSE_DELIMITED, FramingError, frame_response

if TYPE_CHECKING:
    from reactor.conn.http import HttpConnection
    from reactor.loop import PoolJob

# Bodies up to this size are copied behind the head so both leave in one send(); larger
# ones are queued as a second chunk of the same gather write.
_COPY_BODY_MAX = 16 * 1024
_PLAIN = (b"Content-Type", b"text/plain; charset=utf-8")
_STATUS_200 = status_line(200)
_STATUS_304 = status_line(304)
# A 200 whose bytes body is at most this long, and a 304, take `_respond_small` (tests set
# it to -1 to compare that path with the general one byte for byte).
_FUSED_MAX = _COPY_BODY_MAX
# What the access log records for a request whose client left before its answer.
_CLIENT_CLOSED = Response(499)
_SERVER_GAVE_UP = Response(503)


class Exchange(AccessRecord):
    """The per-request state of an `HttpConnection`, and, once answered, the record the
    access log reads (`response` and `bytes_out` are set then): one object per request."""

    __slots__ = ("answered", "body", "conn", "dispatch", "head", "offloaded", "started",
                 "stream_sent", "streamer", "upload")

    def __init__(self, conn: HttpConnection, head: RequestHead, request: Request,
                 dispatch: Dispatch, started: float) -> None:
        self.conn = conn
        self.conn_id = conn.conn_id
        self.head = head
        self.request = request
        self.dispatch = dispatch
        self.started = started
        self.body: list[bytes] | None = None  # the pieces of a buffered body, once one comes
        self.bytes_in = 0  # body bytes received
        self.bytes_out = 0
        self.duration_ms = 0.0
        self.queue_ms = None
        self.upload: UploadPump | None = None
        self.streamer: BodyStreamer | None = None
        self.stream_sent = 0  # bytes of a streamed answer handed to the transport, less drops
        self.answered = False  # a response is being written (or was)
        self.offloaded: PoolJob | None = None  # the app's call queued for (or in) the pool

    # ---- the request body ---------------------------------------------------------------
    def begin(self) -> bool:
        """At head time, for a request with a body: ask the app whether it streams it.
        False when the app answered at once (the connection is then busy or closing)."""
        try:
            answer = self.dispatch.begin()
        except APP_ERRORS as exc:
            self.conn.busy = True
            self.failed(exc)
            return False
        if answer is None:
            return True
        if not isinstance(answer, Upload):
            self.conn.busy = True
            self.handled(self.dispatch.complete(answer))  # the unread body closes the connection
            return False
        self.upload = UploadPump(self.conn.loop, answer, started=self.send_continue,
                                 refused=self._upload_answered,
                                 finished=self._upload_answered, failed=self._upload_failed,
                                 throttle=self.conn.upload_throttled)
        return True

    def send_continue(self) -> None:
        """RFC 9110 10.1.1: the client waits for `100 Continue` before sending the body."""
        conn = self.conn
        if (self.head.expect_continue and self.bytes_in == 0 and not conn.closing
                and conn.parser.buffered == 0 and conn.transport is not None):
            conn.transport.write(CONTINUE_100)

    def data(self, data: bytes, wire_bytes: int) -> None:
        self.bytes_in += len(data)
        if self.upload is not None:
            self.upload.feed(data, wire_bytes)
            self.conn.server.counters["upload_bytes_total"] += len(data)
        elif self.body is None:
            self.body = [data]
        else:
            self.body.append(data)

    def end(self) -> None:
        """The whole request has arrived: run the app (or let the upload finish)."""
        self.conn.busy = True
        if self.upload is not None:
            self.upload.end()
            return
        body = self.body
        if body is not None:
            self.request.body = body[0] if len(body) == 1 else b"".join(body)
            self.body = None
        if self.head.method == b"CONNECT":
            self.respond(plain(501, "Not Implemented\n"))
            return
        try:
            result = self.dispatch.respond()
        except APP_ERRORS as exc:
            self.failed(exc)
            return
        if type(result) is Response:
            self.respond(result)
        else:
            self.handled(result)

    def _upload_answered(self, response: Response) -> None:
        pump = self.upload
        self.upload = None
        if pump is not None:
            self.queue_ms = pump.queue_s * 1000.0
        if self.conn.closing:
            return
        self.conn.busy = True
        try:
            result = self.dispatch.complete(response)
        except APP_ERRORS as exc:
            self.failed(exc)
        else:
            self.handled(result)
        self.conn.resume_processing()

    def _upload_failed(self, exc: BaseException) -> None:
        if isinstance(exc, UploadRefused):  # an answer, not a fault: the body stays unread
            self._upload_answered(exc.response)
            return
        self.upload = None
        if not self.conn.closing:
            self.conn.busy = True
            self.failed(exc)

    # ---- the app's answer ---------------------------------------------------------------
    def handled(self, result: Response | Offload) -> None:
        if isinstance(result, Offload):
            submitted = time.monotonic()
            self.offloaded = self.conn.loop.run_in_pool(
                _run_unless_gone, (self.conn, result.fn, result.args),
                lambda value, error, started: self._offload_done(value, error, started,
                                                                 submitted))
            return
        self.respond(result)

    def _offload_done(self, result: Any, error: BaseException | None, started: float,
                      submitted: float) -> None:
        self.offloaded = None
        if self.conn.closing:
            if isinstance(result, Response):
                self._close_body(result.body)
            return  # the peer left while we worked
        queued = (started - submitted) * 1000.0
        self.queue_ms = queued if self.queue_ms is None else self.queue_ms + queued
        if error is not None:
            self.failed(error)
        else:
            self.handled(result)
        self.conn.resume_processing()  # pipelined requests that waited behind this one

    def failed(self, exc: BaseException) -> None:
        request = self.request
        self.conn.log.error("handler-error", exc, {
            "request_id": request.request_id, "conn_id": self.conn.conn_id,
            "method": request.method, "path": request.path})
        self.respond(internal_error(request))

    # ---- the response -------------------------------------------------------------------
    def respond(self, response: Response) -> None:
        """Frame and queue the response, then hand the connection back."""
        body = response.body
        if response.status == 200 and type(body) is bytes and len(body) <= _FUSED_MAX:
            # first: the common answer (an upgrade is a 101, and `prepare_upgrade` turns it
            # into a 101 or a refusal, never a 200)
            self._respond_small(response, body)
            return
        if response.status == 304 and type(body) is bytes and len(body) <= _FUSED_MAX:
            # a revalidated static file or page: no body, framed and written the same way
            self._respond_small(response, body, 304, _STATUS_304)
            return
        self.answered = True
        conn = self.conn
        head = self.head
        transport = conn.transport
        assert transport is not None
        if response.upgrade is not None and response.status == 101:
            response = conn.server.prepare_upgrade(self.request, response)
            body = response.body
        status = response.status
        body_length: int | None
        if type(body) is bytes:
            body_length = len(body)
        elif isinstance(body, (FileBody, PartsBody)):
            body_length = body.length
        elif isinstance(body, StreamBody):
            body_length = None  # produced as it is sent
        else:
            self._framing_failed(FramingError(
                "a response body is bytes, a FileBody, a PartsBody or a StreamBody, not "
                f"{type(body).__name__}"), status, None)
            return
        try:
            framing, block, length, chunked, keep_alive = frame_response(
                status, response.headers, body_length, head.method == b"HEAD",
                conn.may_keep_alive(head, status), head.version == b"1.0")
            if status < 200 and (status != 101 or response.upgrade is None
                                 or head.version == b"1.0"):
                # an interim status as the answer would leave the client waiting for one
                raise FramingError("a 1xx is no final response (a 101 needs an upgrade"
                                   " protocol and HTTP/1.1)")
            line = status_line(status)  # refuses a status outside 100-599
        except (LocalProtocolError, TypeError) as exc:
            # framing that contradicts the body, a CR in a value, a bad status, a header
            # that is not bytes: the app's bug, answered with a logged 500
            self._framing_failed(_named(exc, response.headers), status, body)
            return
        conn.server.requests_served += 1
        head_bytes = b"%s%s%sX-Request-ID: %s\r\n%s\r\n" % (
            line, server_lines(conn.server.server_name), framing,
            self.request.request_id.encode("ascii"), block)
        if type(body) is bytes and length:
            if length <= _COPY_BODY_MAX:
                transport.write(head_bytes + body)
            else:
                transport.write_many(head_bytes, body)
        elif not (length or chunked):  # HEAD, 1xx/204/304, or an empty body
            self._close_body(body)
            transport.write(head_bytes)
        elif isinstance(body, StreamBody):
            transport.write(head_bytes)
            self.stream_sent = len(head_bytes)
            self.response = response  # the record's, also if the stream is cut short
            self.streamer = BodyStreamer(
                conn.loop, body, chunked=chunked, write=self._stream_write,
                done=lambda error: self._stream_done(error, keep_alive),
                close_failed=self._close_failed,
                length=None if chunked or length == CLOSE_DELIMITED else length)
            return  # `_stream_done` finishes the exchange
        elif isinstance(body, FileBody):
            transport.write(head_bytes)
            transport.write_file(body.file, body.offset, body.length)
        elif isinstance(body, PartsBody):
            transport.write(head_bytes)
            for part in body.parts:
                if isinstance(part, FileBody):
                    transport.write_file(part.file, part.offset, part.length)
                else:
                    transport.write(part)
        self._done(response, len(head_bytes) + length, keep_alive)
        if status == 101 and response.upgrade is not None:
            conn.switch_protocol(response.upgrade)

    def _respond_small(self, response: Response, body: bytes, status: int = 200,
                       line: bytes = _STATUS_200) -> None:
        """`respond` for the common answer, a 200 with a small bytes body (or a 304, `line`
        its status line): the same framing, head, write and log record, without the general
        path's body-kind branches."""
        self.answered = True
        conn = self.conn
        head = self.head
        transport = conn.transport
        assert transport is not None
        server = conn.server
        try:
            framing, block, length, _chunked, keep_alive = frame_response(
                status, response.headers, len(body), head.method == b"HEAD",
                # `conn.may_keep_alive(head, status)`, spelled out on this path
                head.keep_alive and not conn.peer_eof and not server.stopping
                and not conn.parser.head_complete,
                head.version == b"1.0")
        except (LocalProtocolError, TypeError) as exc:
            self._framing_failed(_named(exc, response.headers), status, body)
            return
        server.requests_served += 1
        # head and body in one formatting step (`length` is 0 or the body's: a HEAD's and a
        # 304's are 0)
        data = b"%s%s%sX-Request-ID: %s\r\n%s\r\n%s" % (
            line, server_lines(server.server_name), framing,
            self.request.request_id.encode("ascii"), block, body if length else b"")
        self.response = response
        self.bytes_out = len(data)
        # `_done`, spelled out. With no pipelined request behind this one the answer goes
        # to the socket now and, when the kernel took it all, is logged now (`response_sent`
        # spelled out too); otherwise it is batched with the answers that follow and logged
        # by a marker once sent.
        pipelined = conn.parser.buffered
        if not pipelined and transport.try_write(data):
            self.duration_ms = (time.monotonic() - self.started) * 1000.0
            server.log.request(self)
        else:
            if pipelined:
                transport.write(data)
            transport.when_sent(conn.response_sent, self, self.started)
        conn.exchange_done(keep_alive)

    def _framing_failed(self, exc: Exception, status: int, body: object) -> None:
        """The app's response contradicts itself (framing fields vs body, a CR in a value):
        one logged error and a 500 instead of a stream the client would misread."""
        self._close_body(body)
        request = self.request
        self.conn.log.error("response-framing", exc, {
            "request_id": request.request_id, "conn_id": self.conn.conn_id,
            "method": request.method, "path": request.path, "status": status})
        self.respond(internal_error(request))

    def _done(self, response: Response, sent: int, keep_alive: bool) -> None:
        conn = self.conn
        transport = conn.transport
        assert transport is not None
        self.response = response
        self.bytes_out = sent
        transport.when_sent(conn.response_sent, self, self.started)
        conn.exchange_done(keep_alive)

    def _stream_write(self, data: bytes) -> None:
        self.stream_sent += len(data)
        transport = self.conn.transport
        if transport is not None:
            transport.write(data)
            # one marker a piece: if the connection dies, each learns what of it was dropped
            transport.when_sent(self._stream_piece_gone)

    def _stream_piece_gone(self, unsent: int) -> None:
        self.stream_sent -= unsent

    def _log_stream(self, unsent: int = 0) -> None:
        """The access line of a streamed answer, `bytes_out` what went out (the piece markers
        took off what was dropped); also for a stream the connection lost before its end,
        as nginx logs an answer cut short."""
        self.bytes_out = max(0, self.stream_sent - unsent)
        self.conn.response_sent(self, self.started)

    def _stream_done(self, error: BaseException | None, keep_alive: bool) -> None:
        self.streamer = None
        conn = self.conn
        if conn.closing:
            self._log_stream()
            return
        if error is not None:
            # The head is out: the only honest signal left is to end the connection
            # without the rest of the body, so the client sees a truncated response.
            if not isinstance(error, FileTruncated):  # else the file's doing: a warning
                conn.log.error("stream-error", error, {
                    "request_id": self.request.request_id, "conn_id": conn.conn_id})
            conn.abort()  # drops what is unsent: the piece markers count it
            self._log_stream()
            if isinstance(error, FileTruncated):
                conn.report_truncated(self, error)
            return
        transport = conn.transport
        assert transport is not None
        transport.when_sent(self._log_stream)  # after the last piece: logs what went out
        conn.exchange_done(keep_alive)
        conn.resume_processing()

    def _close_body(self, body: object) -> None:
        """Release a body that will not be sent (or not whole): our files at once, an app's
        stream through the pool (its `close()` is the app's code)."""
        if isinstance(body, StreamBody):
            close_in_pool(self.conn.loop, body, self._close_failed)
        elif isinstance(body, (FileBody, PartsBody)):
            body.close()

    def _close_failed(self, exc: BaseException) -> None:
        """The app's stream raised in `close()`: its bug, logged once; what was sent stands."""
        request = self.request
        self.conn.log.error("stream-close-error", exc, {
            "request_id": request.request_id, "conn_id": self.conn.conn_id,
            "method": request.method, "path": request.path})

    # ---- the peer is gone -----------------------------------------------------------------
    def cancel(self, *, dropped_by_us: bool = False) -> None:
        """No more body will be read and no response written: release what is held.
        A request the app was working on is logged 499 (the client left) or, when the
        server dropped the connection itself (`dropped_by_us`: a stop's deadline), 503.
        The app's call, if still queued for a thread, is taken back: it leaves the pool's
        queue (and its depth) now rather than when a thread would skip it."""
        if self.offloaded is not None:
            self.offloaded.cancel()
            self.offloaded = None
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        if self.streamer is not None:
            self.streamer.cancel()
            self.streamer = None
            self._log_stream()
        elif self.conn.busy and not self.answered:
            self._log_abandoned(_SERVER_GAVE_UP if dropped_by_us else _CLIENT_CLOSED)

    def _log_abandoned(self, response: Response) -> None:
        """No answer will go out for a request the app was working on: the access line all
        the same, nothing sent, status 499 when the client left ("client closed request",
        as nginx logs it), 503 when the server gave up on it."""
        self.answered = True
        self.response = response
        self.bytes_out = 0
        self.conn.response_sent(self, self.started)

    def pause(self) -> None:
        if self.streamer is not None:
            self.streamer.pause()

    def resume(self) -> None:
        if self.streamer is not None:
            self.streamer.resume()

    @property
    def upload_throttled(self) -> bool:
        return self.upload is not None and self.upload.throttled


def _run_unless_gone(conn: HttpConnection, fn: Any, args: tuple[Any, ...]) -> Any:
    """On a worker: the app's call, unless its connection closed while the call waited for
    a thread -- nobody would get the answer (`_offload_done` drops it), and clients that
    reset queued requests would keep the pool busy for nothing, the live ones waiting."""
    if conn.closing:  # a flag only the loop sets: reading it here is safe
        return None
    return fn(*args)


class FailedDispatch:
    """The `Dispatch` of a request whose `Application.open` raised: each step raises that
    error, so the exchange answers it as it answers any fault of the app (one logged
    `handler-error`, a 500), instead of the error escaping into the loop mid-request."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | SystemExit) -> None:
        self.error = error

    def begin(self) -> Upload | Response | None:
        raise self.error

    def respond(self) -> Response | Offload:
        raise self.error

    def complete(self, response: Response) -> Response | Offload:
        raise self.error


def plain(status: int, text: str) -> Response:
    return Response(status, [_PLAIN], text.encode())


def _named(exc: Exception, headers: Any) -> Exception:
    """A TypeError from framing names the header field that is not bytes (a `str` header
    made `bytes.translate` fail with "str.translate() takes exactly one argument")."""
    if isinstance(exc, TypeError):
        for field in headers:
            if (not isinstance(field, tuple) or len(field) != 2
                    or not all(isinstance(part, bytes) for part in field)):
                return TypeError(f"response header {field!r}: a header is a (name, value)"
                                 " pair of bytes")
    return exc
