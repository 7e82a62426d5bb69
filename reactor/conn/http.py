"""HTTP/1.1 over a transport: keep-alive, pipelining, timeouts, framing, the app hand-off.

Strategy: one `HttpConnection` per socket drives the sans-IO `RequestParser`. Requests are
handled strictly one at a time and answered in order: while a request is with the
application (inline or in the pool) later pipelined bytes wait in the parser. A response is
queued as head + body in one write; a marker behind it logs the request once its last byte
has reached the kernel. Protocol errors are answered here (status hint, short body, close).

One timer per connection, against a moving deadline: the timer re-arms itself when it fires
early, so a busy keep-alive connection costs no heap operations per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor.app.types import (
    FileBody,
    Headers,
    Offload,
    PartsBody,
    Request,
    Response,
    StreamBody,
    Upload,
)
from reactor.conn.clock import http_date, server_lines
from reactor.conn.shared import AccessRecord
from reactor.conn.stream import BodyStreamer
from reactor.conn.transport import Transport
from reactor.conn.upload import UploadPump
from reactor.loop import TimerHandle

if TYPE_CHECKING:
    from reactor.conn.server import HttpServer
from reactor.proto import (
    CONTINUE_100,
    NEED_DATA,
    Data,
    EndOfMessage,
    RemoteProtocolError,
    RequestHead,
    header_lines,
    reason_phrase,
    response_head,
    status_line,
)

App = Callable[[Request], "Response | Offload"]

# Bodies up to this size are copied behind the head so both leave in one send(); larger
# ones are queued as a second chunk of the same gather write.
_COPY_BODY_MAX = 16 * 1024
# While a request is being handled, stop reading once this much pipelined input waits.
_MAX_BUFFERED_WHILE_BUSY = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_REQUEST_ID_CHARS = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                     b"-_.:@+=/")
_MAX_REQUEST_ID = 128


class HttpConnection:
    """The HTTP/1.1 protocol of one connection."""

    __slots__ = (
        "_body", "_body_size", "_busy", "_closing", "_deadline", "_head", "_head_started",
        "_parser", "_peer_eof", "_queue_ms", "_request", "_requests", "_server", "_settings",
        "_started", "_stream_sent", "_streamer", "_timer", "_transport", "_upload", "_write_paused",
        "conn_id",
    )

    def __init__(self, server: HttpServer, conn_id: int) -> None:
        self._server = server
        self.conn_id = conn_id
        self._transport: Transport | None = None
        self._settings = server.settings
        self._parser = self._settings.new_parser()
        self._head: RequestHead | None = None
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._busy = False
        self._closing = False
        self._peer_eof = False
        self._write_paused = False
        self._requests = 0
        self._started = 0.0
        self._head_started = 0.0
        self._queue_ms: float | None = None
        self._deadline = 0.0
        self._timer: TimerHandle | None = None
        self._upload: UploadPump | None = None
        self._streamer: BodyStreamer | None = None
        self._stream_sent = 0

    # ---- transport callbacks ----------------------------------------------------------
    def connection_made(self, transport: Transport) -> None:
        self._transport = transport
        self._server.connections.add(self)
        now = time.monotonic()
        self._head_started = now
        # The first request gets the header timeout from accept (nginx's client_header_timeout).
        self._set_deadline(now + self._server.settings.header_s)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if self._server.settings is not self._settings:
            self._settings_reloaded()
        parser.feed(data)
        if self._busy or self._write_paused:
            if parser.buffered > _MAX_BUFFERED_WHILE_BUSY:
                self._transport.pause_reading()  # type: ignore[union-attr]
            return
        self._process()

    def _settings_reloaded(self) -> None:
        """A reload replaced the limits: they apply from this connection's next request
        head on (the parser holds a request in progress to the limits it began under)."""
        settings = self._settings = self._server.settings
        self._parser.set_limits(max_line_bytes=settings.max_request_line,
                                max_header_bytes=settings.max_header_bytes,
                                max_header_fields=settings.max_header_fields,
                                max_body_bytes=settings.max_body_bytes)

    def eof_received(self) -> None:
        if self._busy:
            self._peer_eof = True  # a half-close after a full request: still answer it
            return
        if self._parser.in_message:
            self._log_rejected(499, "client-abort")
        self._close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closing = True
        self._abort_upload()
        if self._streamer is not None:
            self._streamer.cancel()
            self._streamer = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.connection_gone(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._streamer is not None:
            self._streamer.pause()
        self._transport.pause_reading()  # type: ignore[union-attr]

    def write_blocked(self) -> None:
        """The socket stopped taking output: the stalled-write timeout starts now."""
        self._arm(time.monotonic() + self._server.settings.write_s)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._closing:
            return
        if self._streamer is not None:
            self._streamer.resume()
        if self._upload is None or not self._upload.throttled:
            self._transport.resume_reading()  # type: ignore[union-attr]
        if not self._busy:
            self._process()

    # ---- the request cycle ------------------------------------------------------------
    def _process(self) -> None:
        """Pull parser events until it needs data or a request is being handled."""
        parser = self._parser
        event: object = None
        while not self._busy and not self._closing and not self._write_paused:
            try:
                event = parser.next_event()
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            kind = type(event)
            if kind is RequestHead:
                self._head_received(event)  # type: ignore[arg-type]
            elif kind is Data:
                data = event.data  # type: ignore[union-attr]
                self._body_size += len(data)
                if self._upload is not None:
                    self._upload.feed(data)
                else:
                    self._body.append(data)
            elif kind is EndOfMessage:
                if self._upload is not None:
                    self._busy = True
                    self._upload.end()
                else:
                    self._dispatch()
            else:
                break
        if event is NEED_DATA and not self._closing:
            self._awaiting_input()

    def _awaiting_input(self) -> None:
        """Pick the deadline that applies while we wait for the peer."""
        parser = self._parser
        settings = self._server.settings
        if not parser.in_message:
            if self._peer_eof:
                self._close()
            return  # the keep-alive deadline was set when the last response was queued
        if parser.head_complete:
            self._set_deadline(time.monotonic() + settings.body_s)
        else:
            # The header timeout runs from the first bytes of the request we saw unfinished
            # (a request that arrives whole never needs it).
            if not self._head_started:
                self._head_started = time.monotonic()
            self._set_deadline(self._head_started + settings.header_s)

    def _head_received(self, head: RequestHead) -> None:
        self._head = head
        self._head_started = 0.0
        self._requests += 1
        self._started = time.monotonic()
        self._body = []
        self._body_size = 0
        self._queue_ms = None
        self._request = request = self._make_request(head)
        if (head.chunked or head.content_length) and not self._begin_upload(request):
            return  # refused before the body: answered, closing
        if head.expect_continue and self._upload is None:
            self._send_continue()  # else once the upload has accepted the request

    def _send_continue(self) -> None:
        head = self._head
        if (head is not None and head.expect_continue and self._body_size == 0
                and self._parser.buffered == 0 and not self._closing):
            # RFC 9110 10.1.1: the client waits for this before sending the body.
            self._transport.write(CONTINUE_100)  # type: ignore[union-attr]

    def _begin_upload(self, request: Request) -> bool:
        """Ask the app whether it streams this body. False when it refused at once."""
        try:
            answer = self._server.app.begin(request)
        except Exception as exc:
            self._busy = True
            self._handler_failed(exc)
            return False
        if answer is None:
            return True
        if not isinstance(answer, Upload):
            self._busy = True
            self._respond(answer)  # the unread body makes `_respond` close the connection
            return False
        self._upload = UploadPump(self._server.loop, answer, started=self._send_continue,
                                  refused=self._upload_answered,
                                  finished=self._upload_answered, failed=self._upload_failed,
                                  throttle=self._upload_throttled)
        return True

    def _upload_answered(self, response: Response) -> None:
        pump = self._upload
        self._upload = None
        if pump is not None:
            self._queue_ms = pump.queue_s * 1000.0
        if self._closing:
            return
        self._busy = True
        self._respond(response)
        if not self._busy and not self._closing:
            self._process()

    def _upload_failed(self, exc: BaseException) -> None:
        self._upload = None
        if not self._closing:
            self._busy = True
            self._handler_failed(exc)

    def _upload_throttled(self, throttled: bool) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        if throttled:
            transport.pause_reading()
        elif not self._write_paused:
            transport.resume_reading()

    def _abort_upload(self) -> None:
        if self._upload is not None:
            self._upload.abort()
            self._upload = None

    def _dispatch(self) -> None:
        head = self._head
        request = self._request
        assert head is not None and request is not None
        body = self._body
        if body:
            request.body = body[0] if len(body) == 1 else b"".join(body)
            self._body = []
        self._busy = True
        if head.method == b"CONNECT":
            self._respond(_plain(501, "Not Implemented\n"))
            return
        try:
            result = self._server.app(request)
        except Exception as exc:
            self._handler_failed(exc)
            return
        self._handled(result)

    def _make_request(self, head: RequestHead) -> Request:
        target = head.target
        if target[:1] != b"/" and target != b"*":
            # absolute-form (RFC 9112 3.2.2): route on the path, ignore the authority
            scheme_end = target.find(b"://")
            slash = target.find(b"/", scheme_end + 3) if scheme_end > 0 else -1
            target = target[slash:] if slash > 0 else b"/"
        path, _, query = target.partition(b"?")
        server = self._server
        request_id = head.get(b"x-request-id")
        if (not request_id or len(request_id) > _MAX_REQUEST_ID
                or request_id.translate(None, _REQUEST_ID_CHARS)):
            rid = server.new_request_id()
        else:
            rid = request_id.decode("ascii")
        peer = self._transport.peer  # type: ignore[union-attr]
        return Request(head.method.decode("ascii"), path.decode("latin-1"),
                       query.decode("latin-1"), head.version.decode("ascii"),
                       Headers(head.headers), b"", remote_addr=peer[0], remote_port=peer[1],
                       conn_id=self.conn_id, request_no=self._requests, request_id=rid)

    def _handled(self, result: Response | Offload) -> None:
        if type(result) is Offload:
            submitted = time.monotonic()
            self._server.loop.run_in_pool(
                result.fn, result.args,
                lambda value, error, started: self._offload_done(value, error, started,
                                                                 submitted))
            return
        self._respond(result)  # type: ignore[arg-type]

    def _offload_done(self, result: Any, error: BaseException | None, started: float,
                      submitted: float) -> None:
        if self._closing:
            if isinstance(result, Response) and isinstance(result.body,
                                                           (FileBody, PartsBody, StreamBody)):
                result.body.close()
            return  # the peer left while we worked
        queued = (started - submitted) * 1000.0
        self._queue_ms = queued if self._queue_ms is None else self._queue_ms + queued
        if error is not None:
            self._handler_failed(error)
        else:
            self._handled(result)
        if not self._busy and not self._closing:
            self._process()  # pipelined requests that waited behind this one

    def _handler_failed(self, exc: BaseException) -> None:
        request = self._request
        self._server.log.error("handler-error", exc, {
            "request_id": request.request_id if request else None,
            "conn_id": self.conn_id, "method": request.method if request else None,
            "path": request.path if request else None})
        self._respond(_plain(500, "Internal Server Error\n"))

    def _respond(self, response: Response) -> None:
        """Frame and queue the response; decide keep-alive; log once it is sent."""
        head = self._head
        request = self._request
        assert head is not None and request is not None
        transport = self._transport
        assert transport is not None
        server = self._server
        server.requests_served += 1
        status = response.status
        body = response.body
        body_kind = type(body)
        streamed = body_kind is StreamBody
        keep_alive = (head.keep_alive and not self._peer_eof and not server.stopping
                      # after a body we refused or did not finish reading, the stream
                      # position is unknown: close
                      and status != 413 and not self._parser.head_complete
                      # an HTTP/1.0 client learns where a streamed body ends by the close
                      and not (streamed and head.version == b"1.0"))
        send_body = head.method != b"HEAD" and status not in _NO_BODY_STATUSES
        # The fixed lines are ours and known clean; only the app's fields need checking.
        if streamed:
            length = 0
            framing = (b"Transfer-Encoding: chunked\r\n"
                       if status not in _NO_BODY_STATUSES and status >= 200 and keep_alive
                       else b"")
        else:
            length = len(body) if body_kind is bytes else body.length  # type: ignore[union-attr]
            framing = (b"Content-Length: %d\r\n" % length
                       if status not in _NO_BODY_STATUSES and status >= 200 else b"")
        if not keep_alive:
            framing += b"Connection: close\r\n"
        elif head.version == b"1.0":
            framing += b"Connection: keep-alive\r\n"
        head_bytes = b"%s%s%sX-Request-ID: %s\r\n%s\r\n" % (
            status_line(status), server_lines(server.server_name), framing,
            request.request_id.encode("ascii"), header_lines(response.headers))
        if streamed:
            transport.write(head_bytes)
            if send_body:
                self._stream_sent = len(head_bytes)
                self._streamer = BodyStreamer(
                    server.loop, body, chunked=keep_alive,  # type: ignore[arg-type]
                    write=self._stream_write,
                    done=lambda error: self._stream_done(error, response, keep_alive))
                return  # `_stream_done` finishes the exchange
            body.close()  # type: ignore[union-attr]
        elif body_kind is FileBody or body_kind is PartsBody:
            transport.write(head_bytes)
            if send_body:
                self._write_parts(body.parts if body_kind is PartsBody else [body])  # type: ignore[union-attr]
            else:
                body.close()  # type: ignore[union-attr]
        elif not send_body or not body:
            transport.write(head_bytes)
        elif length <= _COPY_BODY_MAX:
            transport.write(head_bytes + body)
        else:
            transport.write_many(head_bytes, body)
        self._exchange_done(response, len(head_bytes) + (length if send_body else 0),
                            keep_alive)

    def _exchange_done(self, response: Response, sent: int, keep_alive: bool) -> None:
        """The whole response is queued: log it once sent, then keep-alive or close."""
        transport = self._transport
        assert transport is not None
        transport.when_sent(self._response_sent,
                            AccessRecord(self._request, response, self.conn_id, sent,  # type: ignore[arg-type]
                                         self._body_size, self._queue_ms),
                            self._started)
        self._busy = False
        self._head = None
        self._request = None
        if keep_alive:
            self._set_deadline(time.monotonic() + self._server.settings.keepalive_s)
        else:
            self._close(linger=self._parser.in_message or self._parser.buffered > 0)

    def _stream_write(self, data: bytes) -> None:
        self._stream_sent += len(data)
        self._transport.write(data)  # type: ignore[union-attr]

    def _stream_done(self, error: BaseException | None, response: Response,
                     keep_alive: bool) -> None:
        self._streamer = None
        if self._closing:
            return
        if error is not None:
            # The head is out: the only honest signal left is to end the connection
            # without the last chunk, so the client sees a truncated body.
            request = self._request
            self._server.log.error("stream-error", error, {
                "request_id": request.request_id if request else None, "conn_id": self.conn_id})
            self._closing = True
            self._transport.abort()  # type: ignore[union-attr]
            return
        self._exchange_done(response, self._stream_sent, keep_alive)
        if not self._busy and not self._closing:
            self._process()

    def _write_parts(self, parts: list[bytes | FileBody]) -> None:
        transport = self._transport
        assert transport is not None
        for part in parts:
            if type(part) is bytes:
                transport.write(part)
            else:
                transport.write_file(part.file, part.offset, part.length)  # type: ignore[union-attr]

    def _response_sent(self, record: AccessRecord, started: float) -> None:
        record.duration_ms = (time.monotonic() - started) * 1000.0
        self._server.log.request(record)

    # ---- errors, timeouts, closing ----------------------------------------------------
    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        """The peer broke the protocol: answer with the status hint and close."""
        self._abort_upload()
        status = exc.status_hint
        self._log_rejected(status, exc.reason, exc.head)
        self._send_error(status, exc.reason)

    def _send_error(self, status: int, reason: str) -> None:
        body = b"%s (%s)\n" % (reason_phrase(status), reason.encode("ascii", "replace"))
        server = self._server
        fields = [server.server_header, (b"Date", http_date()),
                  (b"Content-Type", b"text/plain; charset=utf-8"),
                  (b"Content-Length", b"%d" % len(body)), (b"Connection", b"close"),
                  (b"X-Request-ID", server.new_request_id().encode("ascii"))]
        transport = self._transport
        if transport is not None:
            transport.write(response_head(status, fields) + body)
        self._busy = False
        self._close(linger=True)

    def _log_rejected(self, status: int | None, reason: str, head: RequestHead | None = None
                      ) -> None:
        peer = self._transport.peer if self._transport is not None else ("", 0)
        self._server.log.rejected({
            "conn_id": self.conn_id, "remote_addr": peer[0], "remote_port": peer[1],
            "status": status, "reason": reason,
            "method": head.method.decode("latin-1") if head is not None else None,
            "path": head.target.partition(b"?")[0].decode("latin-1") if head is not None
            else None,
        })

    def _set_deadline(self, when: float) -> None:
        self._deadline = when
        self._arm(when)

    def _arm(self, when: float) -> None:
        """Make the timer fire no later than `when` (the deadline itself is unchanged)."""
        timer = self._timer
        if timer is None or timer.when > when:
            if timer is not None:
                timer.cancel()
            self._timer = self._server.loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or (self._closing and not transport.writing_blocked):
            return
        now = time.monotonic()
        settings = self._server.settings
        if transport.writing_blocked:
            stalled_until = transport.last_write_progress + settings.write_s
            if now < stalled_until:
                self._set_deadline(stalled_until)
                return
            self._log_rejected(None, "write-timeout")
            self._closing = True
            transport.abort()
            return
        if self._busy:
            return  # the handler's answer re-arms the deadline
        if now < self._deadline:
            self._set_deadline(self._deadline)
            return
        parser = self._parser
        if parser.in_message:
            reason = "body-timeout" if parser.head_complete else "header-timeout"
            self._log_rejected(408, reason, self._head)
            self._send_error(408, reason)
        else:
            self._close()  # idle: keep-alive expiry, or connected and never sent a byte

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the response in progress."""
        if self._closing:
            return
        if not self._busy and not self._parser.in_message:
            # linger: a request that reached the kernel just now must not turn into a reset
            self._close(linger=True)
        # else: `server.stopping` makes the current response the last one

    def _close(self, *, linger: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self._abort_upload()  # no more body will be read
        if self._transport is not None:
            self._transport.close(linger=linger)


def _plain(status: int, text: str) -> Response:
    return Response(status, [(b"Content-Type", b"text/plain; charset=utf-8")], text.encode())
