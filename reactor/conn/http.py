"""HTTP/1.1 over a transport: keep-alive, pipelining, timeouts, errors, protocol switch.

Strategy: one `HttpConnection` per socket drives the sans-IO `RequestParser`; each request
becomes an `Exchange` (conn/exchange.py) that owns the request, its body and its response.
Requests are handled strictly one at a time and answered in order: while an exchange is with
the application (inline or in the pool) later pipelined bytes wait in the parser. Protocol
errors are answered here (status hint, short body, close). After a `101` the transport is
handed to the protocol the app named, with the bytes that followed the request head.

Fairness: one pass of `_process` answers at most `REQUESTS_PER_PASS` requests; with more
pipelined behind them it yields (`call_soon`) so that the loop serves the other connections
in between. A client pipelining 64 KiB of `GET / HTTP/1.1` (2,400 requests a read) held the
loop ~70 ms a read, and everybody else's requests waited that long (nginx, too, answers one
pipelined request and posts the rest as an event).

One timer per connection, against a moving deadline: the timer re-arms itself when it fires
early, so a busy keep-alive connection costs no heap operations per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor.app.types import FileTruncated, Headers, Request
from reactor.conn.clock import http_date
from reactor.conn.exchange import Exchange, FailedDispatch, plain
from reactor.conn.interfaces import StreamProtocol, Transport
from reactor.conn.shared import APP_ERRORS, AccessRecord, RequestLog
from reactor.loop import EventLoop, TimerHandle
from reactor.proto import (
    NEED_DATA,
    Data,
    EndOfMessage,
    RemoteProtocolError,
    RequestHead,
    reason_phrase,
    response_head,
    split_absolute_form,
)

if TYPE_CHECKING:
    from reactor.conn.server import HttpServer

# While a request is being handled, stop reading once this much pipelined input waits.
_MAX_BUFFERED_WHILE_BUSY = 256 * 1024
# Requests one pass answers before it lets the loop serve others (see the module).
REQUESTS_PER_PASS = 32
# A graceful stop gives a connection that has not sent a full request yet this long to do
# so (it may be in flight: the client connected just before the stop), then closes it.
SHUTDOWN_GRACE_S = 1.0
_REQUEST_ID_CHARS = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                     b"-_.:@+=/")
_MAX_REQUEST_ID = 128
_new_request = Request.__new__
# The str of common methods and versions, decoded once.
_TEXT = {raw: raw.decode("ascii") for raw in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE",
                                               b"OPTIONS", b"PATCH", b"1.1", b"1.0")}


class HttpConnection:
    """The HTTP/1.1 protocol of one connection (a `StreamProtocol`)."""

    __slots__ = (
        "_body_mark", "_cut", "_deadline", "_exchange", "_fed", "_head_started", "_requests",
        "_settings", "_timer", "_write_paused", "_yielded", "busy", "closing", "conn_id",
        "loop", "parser", "peer_eof", "server", "transport",
    )

    def __init__(self, server: HttpServer, conn_id: int) -> None:
        self.server = server
        self.loop: EventLoop = server.loop
        self.conn_id = conn_id
        self.transport: Transport | None = None
        self._settings = server.settings
        self.parser = self._settings.new_parser()
        self._exchange: Exchange | None = None
        self.busy = False  # an exchange is with the app, or its response is being produced
        self.closing = False
        self.peer_eof = False  # the client half-closed after a full request
        self._write_paused = False
        self._yielded = False  # a pass stopped at REQUESTS_PER_PASS; a callback goes on
        self._requests = 0
        self._fed = 0  # bytes fed to the parser, ever
        self._body_mark = 0  # `_fed - parser.buffered` after the last body piece
        self._head_started = 0.0
        self._deadline = 0.0
        self._timer: TimerHandle | None = None
        self._cut: AccessRecord | None = None  # the first answer the connection's end cut

    @property
    def log(self) -> RequestLog:
        """The server's log now: a reload that changes [log] closes the one this connection
        started under, and a keep-alive connection may outlive many reloads."""
        return self.server.log

    # ---- transport callbacks ----------------------------------------------------------
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        now = time.monotonic()
        self._head_started = now
        # The first request gets the header timeout from accept (nginx's client_header_timeout).
        self._set_deadline(now + self.server.settings.header_s)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if self.server.settings is not self._settings and not parser.in_message:
            self._settings_reloaded()
        parser.feed(data)
        self._fed += len(data)
        if self.busy or self._write_paused:
            if parser.buffered > _MAX_BUFFERED_WHILE_BUSY and self.transport is not None:
                self.transport.pause_reading()
            return
        self._process()

    def _settings_reloaded(self) -> None:
        """A reload replaced the limits and timeouts: they apply from this connection's
        next request on; a request in progress finishes under those it began with (an
        upload is not cut by a shorter body timeout that came while it arrived)."""
        settings = self._settings = self.server.settings
        self.parser.set_limits(max_line_bytes=settings.max_request_line,
                               max_header_bytes=settings.max_header_bytes,
                               max_header_fields=settings.max_header_fields,
                               max_body_bytes=settings.max_body_bytes)

    def eof_received(self) -> None:
        if self.busy:
            self.peer_eof = True  # a half-close after a full request: still answer it
            return
        if self.parser.in_message:
            self._log_rejected(499, "client-abort")
        self._close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if isinstance(exc, FileTruncated) and self._cut is not None:
            self.report_truncated(self._cut, exc)  # its access line is out: the buffer's marker
        if not self.closing and not self.busy and self.parser.in_message:
            self._log_rejected(499, "client-abort")  # gone mid-head or mid-body (a reset)
        self.closing = True
        if self._exchange is not None:
            # no error: we dropped the connection ourselves (a stop's deadline), not the peer
            self._exchange.cancel(dropped_by_us=exc is None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._exchange is not None:
            self._exchange.pause()
        if self.transport is not None:
            self.transport.pause_reading()

    def write_blocked(self) -> None:
        """The socket stopped taking output: the stalled-write timeout starts now."""
        self._arm(time.monotonic() + self.server.settings.write_s)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.closing:
            return
        exchange = self._exchange
        if exchange is not None:
            exchange.resume()
        if (exchange is None or not exchange.upload_throttled) and self.transport is not None:
            self.transport.resume_reading()
        if not self.busy:
            self._process()

    # ---- the request cycle ------------------------------------------------------------
    def _process(self) -> None:
        """Pull parser events until it needs data or a request is being handled."""
        if self._yielded:
            return  # `_next_pass` goes on
        parser = self.parser
        event: object = None
        answered = 0
        while not self.busy and not self.closing and not self._write_paused:
            try:
                event = parser.next_event()
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            if type(event) is RequestHead:
                if event.chunked or event.content_length:
                    self._body_mark = self._fed - parser.buffered
                    self._head_received(event)
                    continue
                opened = self._head_received(event)
                if not self.closing and not self._write_paused:
                    # A request without a body ends with its head: the parser's next event
                    # is its EndOfMessage; answer now rather than on another pass.
                    parser.next_event()
                    opened.end()
                answered += 1
                if answered == REQUESTS_PER_PASS and parser.buffered:
                    self._yield_pass()
                    return
            elif type(event) is Data:
                exchange = self._exchange
                assert exchange is not None  # the parser is inside a message
                # What the piece cost on the wire, chunk framing included, so an upload's
                # backlog counts it (a flood of 1-byte chunks is 6 bytes each, not 1).
                consumed = self._fed - parser.buffered
                exchange.data(event.data, consumed - self._body_mark)
                self._body_mark = consumed
            elif type(event) is EndOfMessage:
                exchange = self._exchange
                assert exchange is not None
                exchange.end()
                answered += 1
                if answered == REQUESTS_PER_PASS and parser.buffered:
                    self._yield_pass()
                    return
            else:
                break
        if event is NEED_DATA and not self.closing and (self.peer_eof or parser.in_message):
            self._awaiting_input()  # else idle between requests: the keep-alive deadline runs

    def _yield_pass(self) -> None:
        # No reading meanwhile: the input waiting stays bounded, and an EOF (a half-close
        # after the requests) is seen once they are answered, as before.
        self._yielded = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.loop.call_soon(self._next_pass)

    def _next_pass(self) -> None:
        self._yielded = False
        if not (self.busy or self.closing or self._write_paused):
            self._process()
        # as if the pass had not yielded: also when its last request went to the pool (busy:
        # the rest is answered when that is done, and the next request must be read then)
        self._read_again()

    def resume_processing(self) -> None:
        """An exchange finished outside `_process` (pool, upload, stream): go on."""
        if not self.busy and not self.closing:
            self._process()
            self._read_again()  # input held back while the request was handled

    def _read_again(self) -> None:
        """Resume reading unless something holds it back: a pass that yielded (its turn
        resumes it), the output (`resume_writing`), an upload (`upload_throttled`), or, while
        a request is handled, the input waiting behind it over the mark (`data_received`)."""
        transport = self.transport
        exchange = self._exchange
        if (transport is not None and not self._yielded and not self.closing
                and not self._write_paused
                and (exchange is None or not exchange.upload_throttled)
                and not (self.busy and self.parser.buffered > _MAX_BUFFERED_WHILE_BUSY)):
            transport.resume_reading()

    def _awaiting_input(self) -> None:
        """Pick the deadline that applies while we wait for the peer."""
        parser = self.parser
        settings = self._settings  # the request's own, also after a reload
        if not parser.in_message:
            if self.peer_eof:
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

    def _head_received(self, head: RequestHead) -> Exchange:
        self._head_started = 0.0
        self._requests += 1
        request = self._make_request(head)
        try:
            dispatch = self.server.app.open(request)
        except APP_ERRORS as exc:  # the app's fault at head time: a logged 500, like any other
            dispatch = FailedDispatch(exc)
        exchange = self._exchange = Exchange(self, head, request, dispatch, time.monotonic())
        if (head.chunked or head.content_length) and not exchange.begin():
            return exchange  # refused before the body: answered, closing
        if head.expect_continue and exchange.upload is None:
            exchange.send_continue()  # else once the upload has accepted the request
        return exchange

    def _make_request(self, head: RequestHead) -> Request:
        target = head.target
        fields = head.headers
        if target[:1] != b"/" and target != b"*" and head.method != b"CONNECT":
            # absolute-form (RFC 9112 3.2.2): route on the path; the target's authority is
            # the host, the Host field "MUST" be ignored (the app's Host is the authority).
            # A CONNECT's authority-form ("host:port", 3.2.3) is no URI: it stays the target
            # and its Host stays as sent (cut as a URI, "a.example:443" became Host
            # "example:443" and path "/").
            authority, target = split_absolute_form(target)
            fields = [(name, authority if name == b"host" else value) for name, value in fields]
        path, _, query = target.partition(b"?")
        request_id = None
        for name, value in head.headers:  # head.get inlined: this runs for every request
            if name == b"x-request-id":
                request_id = value
                break
        if (not request_id or len(request_id) > _MAX_REQUEST_ID
                or request_id.translate(None, _REQUEST_ID_CHARS)):
            rid = self.server.new_request_id()
        else:
            rid = request_id.decode("ascii")
        transport = self.transport
        assert transport is not None
        peer = transport.peer
        # `Request(...)` with its keyword arguments, made as two calls: CPython 3.11 packs the
        # keywords of a class call into a dict for `__init__` (type_call), a method call
        # passes them as they are (vectorcall): ~0.2 µs less per request.
        request = _new_request(Request)
        Request.__init__(request, _TEXT.get(head.method) or head.method.decode("ascii"),
                         path.decode("latin-1"), query.decode("latin-1") if query else "",
                         _TEXT.get(head.version) or head.version.decode("ascii"),
                         Headers(fields), b"", remote_addr=peer[0],
                         remote_port=peer[1], conn_id=self.conn_id,
                         request_no=self._requests, request_id=rid)
        extra = transport.extra  # TLS facts, a PROXY-protocol source: see Request.conn_info
        if extra:
            request.conn_info = extra
            request.scheme = extra.get("scheme", "http")
            request.client_addr = extra.get("client_addr", peer[0])
        return request

    def may_keep_alive(self, head: RequestHead, status: int) -> bool:
        """Whether the connection may stay open after this response, as far as it knows."""
        return (head.keep_alive and not self.peer_eof and not self.server.stopping
                # after a body we refused or did not finish reading, the stream position
                # is unknown: close
                and status != 413 and not self.parser.head_complete)

    def exchange_done(self, keep_alive: bool) -> None:
        """The exchange queued its whole response: keep-alive or close."""
        self.busy = False
        self._exchange = None
        if keep_alive:
            # `_set_deadline` spelled out: this runs once per request, and the timer usually
            # already fires before the new deadline (it then re-arms itself, see the module)
            deadline = self._deadline = time.monotonic() + self.server.settings.keepalive_s
            timer = self._timer
            if timer is None or timer.when > deadline:
                self._arm(deadline)
        else:
            self._close(linger=self.parser.in_message or self.parser.buffered > 0)

    def response_sent(self, record: AccessRecord, started: float, unsent: int = 0) -> None:
        """The answer reached the kernel (or the connection died: `unsent` bytes of it were
        dropped, and the access line says what was really sent)."""
        record.duration_ms = (time.monotonic() - started) * 1000.0
        if unsent:
            record.bytes_out = max(0, record.bytes_out - unsent)
            if self._cut is None:
                self._cut = record
        self.server.log.request(record)

    def report_truncated(self, record: AccessRecord, exc: FileTruncated) -> None:
        """An answer cut because its file ended early (sendfile or gzip stream): one warning
        naming the request, as nginx logs '"file" was truncated'; the access line says 200
        with the bytes that went out."""
        request = record.request
        self.loop.report("file-truncated", {
            "request_id": request.request_id, "conn_id": self.conn_id,
            "method": request.method, "path": request.path, "bytes_out": record.bytes_out,
            "reason": str(exc)})

    def upload_throttled(self, throttled: bool) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        if throttled:
            transport.pause_reading()
        elif not self._write_paused:
            transport.resume_reading()

    def switch_protocol(self, factory: Callable[[], Any]) -> None:
        """After a 101: the transport carries `factory()`'s protocol from here on."""
        transport = self.transport
        self.closing = True  # this HTTP protocol is done with the connection
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if transport is None:
            return
        protocol: StreamProtocol = factory()
        transport.set_protocol(protocol, self.parser.trailing_data)

    # ---- errors, timeouts, closing ----------------------------------------------------
    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        """The peer broke the protocol: answer with the status hint and close."""
        head = exc.head
        request_id = None
        exchange, self._exchange = self._exchange, None
        if exchange is not None:  # a broken body: the request (and its id) exists
            exchange.cancel()
            head = head or exchange.head
            request_id = exchange.request.request_id
        self._send_error(exc.status_hint, exc.reason, head, request_id)

    def _send_error(self, status: int, reason: str, head: RequestHead | None,
                    request_id: str | None = None) -> None:
        """Answer a request we refuse (or time out) with a short text, log it, and close."""
        if request_id is None:
            request_id = self.server.new_request_id()
        self._log_rejected(status, reason, head, request_id)
        body = b"%s (%s)\n" % (reason_phrase(status), reason.encode("ascii", "replace"))
        fields = [self.server.server_header, (b"Date", http_date()),
                  (b"Content-Type", b"text/plain; charset=utf-8"),
                  (b"Content-Length", b"%d" % len(body)), (b"Connection", b"close"),
                  (b"X-Request-ID", request_id.encode("ascii"))]
        if self.transport is not None:
            self.transport.write(response_head(status, fields) + body)
        self.busy = False
        self._close(linger=True)

    def _log_rejected(self, status: int | None, reason: str, head: RequestHead | None = None,
                      request_id: str | None = None) -> None:
        peer = self.transport.peer if self.transport is not None else ("", 0)
        exchange = self._exchange
        if exchange is not None:
            head = head or exchange.head
            request_id = request_id or exchange.request.request_id
        if head is not None:
            asked: tuple[bytes, bytes] | None = (head.method, head.target)
        else:  # the head never ended: the request line may still say what was asked
            asked = self.parser.partial_request_line()
        self.log.rejected({
            "conn_id": self.conn_id, "remote_addr": peer[0], "remote_port": peer[1],
            "status": status, "reason": reason, "request_id": request_id,
            "method": asked[0].decode("latin-1") if asked is not None else None,
            "path": asked[1].partition(b"?")[0].decode("latin-1") if asked is not None
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
            self._timer = self.loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or (self.closing and not transport.writing_blocked):
            return
        now = time.monotonic()
        settings = self.server.settings
        if transport.writing_blocked:
            stalled_until = transport.last_write_progress + settings.write_s
            if now < stalled_until:
                self._set_deadline(stalled_until)
                return
            self._log_rejected(None, "write-timeout")
            self.abort()
            return
        if self.busy:
            return  # the handler's answer re-arms the deadline
        if now < self._deadline:
            self._set_deadline(self._deadline)
            return
        parser = self.parser
        if parser.in_message:
            reason = "body-timeout" if parser.head_complete else "header-timeout"
            exchange, self._exchange = self._exchange, None
            if exchange is not None:
                exchange.cancel()
                self._send_error(408, reason, exchange.head, exchange.request.request_id)
            else:
                self._send_error(408, reason, None)
        else:
            self._close()  # idle: keep-alive expiry, a stop's grace, or never sent a byte

    @property
    def reusable(self) -> bool:
        """Waiting for a request with nothing of it read and nothing unsent: a keep-alive
        connection between requests, or a new one that has sent nothing yet (nginx's
        "reusable" connection). Closing it loses nothing a client does not expect to lose
        (RFC 9112 9.3.1: a connection may close at any time while idle; a client retries a
        request that met a connection closed before any answer). A request already in the
        socket, not yet read (the loop had the listener's event first), is not nothing: the
        client sent it, and the close would reset it away."""
        transport = self.transport
        return (not self.busy and not self.closing
                and not self._write_paused and transport is not None
                and not self.parser.in_message and not self.parser.buffered
                and not transport.pending_bytes and not transport.writing_blocked
                and not transport.input_waiting)

    @property
    def awaiting_request(self) -> bool:
        """Nothing to answer and nothing unsent: a `reusable` connection, or one whose
        request head is still arriving."""
        transport = self.transport
        return (self._exchange is None and not self.busy and not self.closing
                and not self._write_paused and not self._yielded and transport is not None
                and not transport.pending_bytes and not transport.writing_blocked)

    def close_idle(self) -> None:
        """Close a `reusable` (or `awaiting_request`) connection, as its keep-alive
        expiry (or header timeout) would, without an answer."""
        self._close()

    def shutdown(self) -> None:
        """Graceful stop: answer what the peer already sent, then close.

        A request in progress gets its response (with `Connection: close`, as the server
        is stopping). An idle connection first reads what the socket holds -- a request may
        have arrived since the last read -- and one that has not sent a whole request yet
        gets a short grace to do so; otherwise it closes now.
        """
        if self.closing or self._yielded:
            return  # yielded: answering what is buffered; `server.stopping` ends it
        transport = self.transport
        if not self.busy and not self.parser.in_message and transport is not None:
            transport.read_now()
            if self.closing or self.busy or self.parser.in_message:
                return  # answering it (or it ended); `server.stopping` makes it the last
            if self._requests == 0:
                self._set_deadline(time.monotonic() + SHUTDOWN_GRACE_S)
                return
            # linger: a request that reached the kernel just now must not turn into a reset
            self._close(linger=True)
        # else: `server.stopping` makes the current response the last one

    def abort(self) -> None:
        """Close at once, dropping unsent output (a broken stream, a stalled write)."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _close(self, *, linger: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        if self._exchange is not None:
            self._exchange.cancel()  # no more body will be read
        if self.transport is not None:
            self.transport.close(linger=linger)


__all__ = ["HttpConnection", "plain"]
