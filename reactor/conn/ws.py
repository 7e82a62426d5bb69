"""WebSocket sessions: the upgrade answer, then the protocol a 101 switches the transport to.

Strategy: `upgrade_response` turns an app's `Response(101, upgrade=WebSocketUpgrade)` into
the real answer -- the 101 with the accept key and the agreed extension, or a 400/426/403
with the reason -- so the app never sees the protocol. `WebSocketConnection` then drives the
sans-IO parser (reactor.proto.websocket) on the loop: pings, pongs, the close handshake,
keep-alive pings and their timeout all happen here, so a handler blocking in the pool never
delays them. Handler callbacks run one at a time in arrival order (pool by default, or on
the loop); while too many wait, reading stops (and a pong we do not read is not missing: its
wait restarts when reading does). `send()` from another thread is framed (compressed) there
and queued to the loop.
Output beyond the transport's high-water mark stops reading; a peer that does not read for
`write_s` is dropped (close code 1008 in the log). A graceful stop sends 1001 and
waits, bounded, for the peer's Close; once the handshake is done (or failed), a peer that does
not read our Close is dropped after the same bound. One access line per session when it ends.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor.app.types import Request, Response
from reactor.app.websocket import WebSocket, WebSocketHandler, WebSocketUpgrade
from reactor.conn.interfaces import Transport
from reactor.conn.shared import APP_ERRORS, RequestLog
from reactor.loop import PoolClosed, TimerHandle
from reactor.proto.deflate import Deflate, DeflateConfig, DeflateParams
from reactor.proto.websocket import (
    GOING_AWAY,
    INTERNAL_ERROR,
    NO_STATUS,
    OP_PING,
    OP_PONG,
    POLICY,
    Close,
    Failure,
    HandshakeError,
    Message,
    MessageEncoder,
    Ping,
    Pong,
    WebSocketParser,
    check_handshake,
    close_payload,
    message_payload,
    plain_message,
)

if TYPE_CHECKING:
    from reactor.conn.server import HttpServer

ABNORMAL = 1006  # no Close frame: reported locally, never sent (RFC 6455 7.4.1)
# Handler callbacks waiting for the pool beyond this, or messages of more than
# max(websocket.max_message_bytes, this) waiting: stop reading until they catch up.
_MAX_QUEUED_CALLBACKS = 64
_MIN_QUEUED_BYTES = 1 << 20
# Input parsed in one loop pass at most; the rest of a read waits for the next pass (or, held
# back like reading, until the handler and the output catch up), reading paused meanwhile. A
# read of 64 KiB of tiny frames (9,000 one-byte fragments, messages or pings) held the loop
# 25-80 ms, and every other connection waited that long.
_PARSE_SLICE = 4 * 1024


class WebSocketSettings:
    """WebSocket limits and timers in force for new sessions (replaced whole on reload)."""

    __slots__ = ("close_timeout_s", "deflate", "max_message_bytes", "ping_interval_s",
                 "ping_timeout_s", "send_buffer_bytes")

    def __init__(self, *, ping_interval_s: float = 20.0, ping_timeout_s: float = 20.0,
                 max_message_bytes: int = 1 << 20, deflate: bool = True,
                 send_buffer_bytes: int = 4 << 20, close_timeout_s: float = 5.0) -> None:
        self.ping_interval_s = ping_interval_s  # 0: no keep-alive pings
        self.ping_timeout_s = ping_timeout_s
        self.max_message_bytes = max_message_bytes
        self.deflate = deflate
        self.send_buffer_bytes = send_buffer_bytes
        self.close_timeout_s = close_timeout_s  # our Close sent: wait this long for theirs

    def deflate_config(self) -> DeflateConfig | None:
        return DeflateConfig() if self.deflate else None


def upgrade_response(server: HttpServer, request: Request, response: Response) -> Response:
    """The answer to a WebSocket route's upgrade: the 101, or why not (400/403/426/503)."""
    upgrade = response.upgrade
    assert isinstance(upgrade, WebSocketUpgrade)
    settings = server.websocket
    if server.stopping:  # a session now would miss the stop's Close 1001
        return Response(503, [(b"Content-Type", b"text/plain; charset=utf-8")],
                        b"Service Unavailable (server-stopping)\n")
    try:
        handshake = check_handshake(request.method, request.version, request.headers,
                                    deflate=settings.deflate_config())
    except HandshakeError as exc:
        return Response(exc.status, [(b"Content-Type", b"text/plain; charset=utf-8"),
                                     *exc.headers],
                        f"Cannot upgrade to WebSocket ({exc.reason})\n".encode())
    if upgrade.origins is not None and (
            handshake.origin is None or handshake.origin.decode("latin-1")
            not in upgrade.origins):
        return Response(403, [(b"Content-Type", b"text/plain; charset=utf-8")],
                        b"Forbidden (websocket-origin-not-allowed)\n")
    chosen = next((p.decode("latin-1") for p in handshake.protocols
                   if p.decode("latin-1") in upgrade.subprotocols), None)
    fields = handshake.response_headers(chosen.encode("latin-1") if chosen else None)
    fields.extend(response.headers)
    deflate = handshake.deflate

    def protocol() -> WebSocketConnection:
        return WebSocketConnection(server, upgrade, request, deflate, chosen)
    return Response(101, fields, upgrade=protocol)


class WebSocketConnection:
    """The WebSocket protocol of one connection (a `StreamProtocol`), server side."""

    __slots__ = (
        "_acked_seen", "_ahead_of_ping", "_busy", "_close_reason", "_close_sent",
        "_close_timer", "_closed", "_factory_error", "_handler_closed", "_held", "_inside",
        "_last_ping_at", "_ping_sent_at", "_ping_timer", "_queue", "_queued_bytes",
        "_slow_timer", "_unparsed", "_unparsed_at", "_write_paused", "bytes_in", "bytes_out",
        "close_code", "closed_by", "context", "deflate", "encoder", "handler", "inline",
        "loop", "loop_thread", "messages_in", "messages_out", "parser", "request", "server",
        "settings", "started", "transport", "ws",
    )

    def __init__(self, server: HttpServer, upgrade: WebSocketUpgrade, request: Request,
                 deflate_params: DeflateParams | None, subprotocol: str | None = None) -> None:
        self.server = server
        self.loop = server.loop
        self.settings = settings = server.websocket
        # A handshake has no body (RFC 6455 4.1); one sent was read before the switch, and
        # the session, which may last for days, does not keep it.
        request.body = b""
        self.request = request
        self.deflate = Deflate(deflate_params) if deflate_params is not None else None
        self.parser = WebSocketParser(max_message_bytes=settings.max_message_bytes,
                                      deflate=self.deflate)
        self.encoder = MessageEncoder(self.deflate)
        self.inline = upgrade.inline
        self.context = upgrade.context  # every handler callback runs in it, one at a time
        self._inside = False  # an inline callback is running (in `context`)
        self.ws = WebSocket(request, self, subprotocol)
        self._factory_error: Exception | SystemExit | None = None
        try:
            self.handler: WebSocketHandler = upgrade.context.run(upgrade.factory)
        except APP_ERRORS as exc:  # the 101 is out: the session ends at once with 1011
            self.handler, self._factory_error = WebSocketHandler(), exc
        self.handler.ws = self.ws
        self.transport: Transport | None = None
        self.loop_thread = threading.get_ident()  # made on the loop thread
        self.started = time.monotonic()
        self.bytes_in = self.bytes_out = self.messages_in = self.messages_out = 0
        self.close_code: int | None = None
        self._close_reason = ""
        self.closed_by: str | None = None
        self._close_sent = False
        self._closed = False  # the transport is gone
        self._handler_closed = False
        # callbacks waiting for the pool, each with the size of its message (0: none)
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...], int]] = deque()
        self._queued_bytes = 0
        self._busy = False
        self._held = False  # reading paused until the handler's callbacks catch up
        self._write_paused = False
        self._ping_sent_at = 0.0  # while a ping's pong has not come back
        self._last_ping_at = 0.0
        self._acked_seen = -1  # the peer's acknowledged bytes at the ping (-1: unknown)
        self._ahead_of_ping = -1  # ... once all we sent before the ping is delivered
        self._ping_timer: TimerHandle | None = None
        self._close_timer: TimerHandle | None = None
        self._slow_timer: TimerHandle | None = None
        self._unparsed = b""  # a read longer than `_PARSE_SLICE`, parsed over several passes
        self._unparsed_at = 0  # ... from here on

    @property
    def log(self) -> RequestLog:
        """The server's log now (a session may outlive a reload that replaced it)."""
        return self.server.log

    # ---- transport callbacks ------------------------------------------------------------------
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.server.counters["websocket_sessions_total"] += 1
        if self._factory_error is not None:
            self._handler_closed = True  # its handler never existed
            self._handler_failed(self._factory_error)
            return
        if self.settings.ping_interval_s > 0:
            self._ping_timer = self.loop.call_later(self.settings.ping_interval_s, self._ping_due)
        self._dispatch(self.handler.on_open)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._unparsed:  # (reading resumed by someone else) after what waits, in order
            self._unparsed = self._unparsed[self._unparsed_at:] + data
            self._unparsed_at = 0
            return
        self._parse(data, 0)

    def _parse(self, data: bytes, at: int) -> None:
        end = at + _PARSE_SLICE
        if len(data) > end:
            self._unparsed, self._unparsed_at = data, end
            if self.transport is not None:
                self.transport.pause_reading()
            self.loop.call_soon(self._parse_more)
        else:
            self._unparsed = b""
        self._receive(data[at:end] if at or len(data) > end else data)

    def _receive(self, data: bytes) -> None:
        for event in self.parser.receive(data):
            if isinstance(event, Message):
                if not self._close_sent:
                    self.messages_in += 1
                    self._dispatch(self.handler.on_message, event.data,
                                   size=len(event.data))
            elif isinstance(event, Ping):
                if not self._close_sent:
                    self._write(self.encoder.control(OP_PONG, event.payload))
            elif isinstance(event, Pong):
                self._ping_sent_at = 0.0
            elif isinstance(event, Close):
                self._close_received(event)
            elif isinstance(event, Failure):
                self._fail(event.code, event.reason)

    def _parse_more(self) -> None:
        held = (self._held or self._write_paused) and not self._close_sent
        if self._closed or not self._unparsed or held:
            return  # (held: `_resume_reading` calls again)
        self._parse(self._unparsed, self._unparsed_at)
        if not self._unparsed and (self._close_sent or not (self._held or self._write_paused)):
            self._resume_reading()

    def eof_received(self) -> None:
        if self._unparsed:  # what came before the end (a Close, say) counts first
            data, self._unparsed = self._unparsed[self._unparsed_at:], b""
            self._receive(data)
        self._close_transport(linger=False)  # nothing more comes in: no need to linger

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closed = True
        if self.close_code is None:
            self.close_code, self.closed_by = ABNORMAL, "client"
        self._cancel_timers()
        self._end_handler(self.close_code, self._close_reason)
        self.server.counters["websocket_sessions_closed_total"] += 1
        self._log_session()

    def pause_writing(self) -> None:
        """Output is piling up: stop reading (no more echoes); drop the peer after write_s."""
        self._write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        if self._slow_timer is None:
            self._slow_timer = self.loop.call_later(self.server.settings.write_s,
                                                    self._slow_consumer)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        if not self._backlogged:
            self._resume_reading()

    def write_blocked(self) -> None:
        return None

    def shutdown(self) -> None:
        """Graceful stop: Close 1001, then wait (bounded) for the peer's Close."""
        self.close(GOING_AWAY, "server shutting down")

    # ---- the close handshake ------------------------------------------------------------------
    def _close_received(self, event: Close) -> None:
        if not self._close_sent:
            self.close_code, self._close_reason, self.closed_by = (
                event.code, event.reason, "client")
            # 5.5.1: echo the status code (an empty Close when it carried none)
            self._send_close(event.code if event.code != NO_STATUS else None, "")
        self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or a limit): Close `code`, then end (7.1.7)."""
        if not self._close_sent:
            self.close_code, self._close_reason, self.closed_by = code, reason, "server"
            self._send_close(code, reason[:100])
        self._close_transport()

    def _close_transport(self, *, linger: bool = True) -> None:
        """The session is over: close the TCP connection once our output has left (the
        server closes first, 7.1.1; lingering, so nothing resets it). A peer that does not
        read would keep it open for ever: it is dropped after close_timeout_s."""
        if self.transport is None:
            return
        self.transport.close(linger=linger)
        if not self._closed and self._close_timer is None:
            self._close_timer = self.loop.call_later(self.settings.close_timeout_s,
                                                     self._close_timed_out)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake from our side (any thread). A code or reason no peer
        may accept raises ValueError here, in the caller's thread."""
        close_payload(code, reason)
        if threading.get_ident() != self.loop_thread:
            self.loop.call_soon_threadsafe(self.close, code, reason)
            return
        if self._close_sent or self._closed:
            return
        self.close_code, self._close_reason, self.closed_by = code, reason, "server"
        self._send_close(code, reason)
        if self._close_timer is None:  # (the peer's end of input may have armed it)
            self._close_timer = self.loop.call_later(self.settings.close_timeout_s,
                                                     self._close_timed_out)
        # What comes in now is no more for the handler, only the peer's Close matters: read
        # it, whatever held reading back (a backlog for the handler, our unsent output).
        self._held = False
        self._resume_reading()

    def _send_close(self, code: int | None, reason: str) -> None:
        self._close_sent = True
        try:
            frame = self.encoder.close(code, reason)
        except ValueError:  # `close` checked the app's; ours, cut to 100 characters, could
            frame = self.encoder.close(INTERNAL_ERROR, "")  # still pass 123 bytes of UTF-8
        self._write(frame)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self._abort()

    def _abort(self) -> None:
        """Drop the connection now: what it never sent is not in `bytes_out`."""
        transport = self.transport
        if transport is not None:
            self.bytes_out -= transport.pending_bytes
            transport.abort()

    def _slow_consumer(self) -> None:
        """The peer has not read our output for write_s: drop it (1008 in the log)."""
        self._slow_timer = None
        if self._closed or not self._write_paused:
            return
        if not self._close_sent:
            self.close_code, self._close_reason, self.closed_by = (
                POLICY, "slow consumer", "server")
        self._abort()

    # ---- keep-alive pings ----------------------------------------------------------------------
    def _ping_due(self) -> None:
        self._ping_timer = None
        if self._closed or self._close_sent:
            return
        now = time.monotonic()
        settings = self.settings
        if self._ping_sent_at:
            if self._held:
                # we do not read while the handler catches up: the pong may be waiting
                # unread, not missing. Its wait starts again when reading resumes.
                when = now + settings.ping_timeout_s
            elif now - self._ping_sent_at >= settings.ping_timeout_s and self._ping_moving():
                # no pong yet, but what we sent before the ping is still being delivered
                # (on a slow link the ping waits behind megabytes of messages, and the pong
                # behind it): the ping stays out, its wait starts again
                self._ping_sent_at = now
                when = now + settings.ping_timeout_s
            elif now - self._ping_sent_at >= settings.ping_timeout_s:
                # the peer is gone or stuck: a last Close 1011, then drop it
                self.close_code, self._close_reason, self.closed_by = (
                    INTERNAL_ERROR, "ping timeout", "server")
                self._send_close(INTERNAL_ERROR, "ping timeout")
                self._abort()
                return
            else:
                when = self._ping_sent_at + settings.ping_timeout_s
        elif now < self._last_ping_at + settings.ping_interval_s:
            # the pong came back before a (shorter) ping_timeout_s ran out: the next ping
            # is due one interval after the last, not now
            when = self._last_ping_at + settings.ping_interval_s
        else:
            self._ping_sent_at = self._last_ping_at = now
            self._note_ping_position()
            self._write(self.encoder.control(OP_PING, b"%d" % int(now * 1000)))
            when = now + min(settings.ping_interval_s, settings.ping_timeout_s)
        self._ping_timer = self.loop.call_at(when, self._ping_due)

    def _note_ping_position(self) -> None:
        """Where the ping about to be written sits in our output, in the peer's TCP
        acknowledgements: once they reach `_ahead_of_ping`, all we sent before it is
        delivered."""
        transport = self.transport
        delivery = transport.delivery() if transport is not None else None
        if transport is None or delivery is None:
            self._acked_seen = self._ahead_of_ping = -1
            return
        acked, queued = delivery
        self._acked_seen = acked
        self._ahead_of_ping = acked + queued + transport.pending_bytes

    def _ping_moving(self) -> bool:
        """The output ahead of the unanswered ping was still being delivered when its wait
        ran out: the peer has acknowledged more since the ping went out (or since this last
        said so), and at that time had not yet got all of what came before the ping.
        Bounded: once that is delivered, the pong gets one more wait, no more; a ping with
        nothing before it gets none. Where the socket cannot say, False."""
        seen = self._acked_seen
        if seen < 0 or seen >= self._ahead_of_ping:
            return False
        transport = self.transport
        delivery = transport.delivery() if transport is not None else None
        if delivery is None or delivery[0] <= seen:
            return False
        self._acked_seen = delivery[0]
        return True

    def _cancel_timers(self) -> None:
        for timer in (self._ping_timer, self._close_timer, self._slow_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._close_timer = self._slow_timer = None

    # ---- sending (WebSocketChannel) -------------------------------------------------------------
    @property
    def open(self) -> bool:
        return not self._close_sent and not self._closed

    def send(self, data: str | bytes) -> None:
        """Queue a message; from any thread. Dropped once the close handshake began.
        A bytearray or memoryview is copied now: the caller may reuse it once this returns."""
        if type(data) is not str and type(data) is not bytes:
            # a wrong type raises here, in the caller's thread
            data = str(data) if isinstance(data, str) else message_payload(data)[1]
        if threading.get_ident() == self.loop_thread:
            self._send_message(data)
        elif self.deflate is not None and self.deflate.compress_in_order:
            # compressed on the loop: one zlib stream, in wire order
            self.loop.call_soon_threadsafe(self._send_message, data)
        elif self.open:
            # framed (compressed) here, in the sender's thread: zlib work off the loop
            self.loop.call_soon_threadsafe(self._send_frame, self.encoder.message(data), 1)

    def send_frame(self, frame: bytes) -> None:
        """Queue an already encoded message frame (a broadcast); from any thread."""
        if threading.get_ident() == self.loop_thread:
            self._send_frame(frame, 1)
        else:
            self.loop.call_soon_threadsafe(self._send_frame, frame, 1)

    def encode(self, data: str | bytes) -> bytes:
        return plain_message(data)

    def _send_message(self, data: str | bytes) -> None:
        if self._close_sent or self._closed:
            return
        self._send_frame(self.encoder.message(data), 1)

    def _send_frame(self, frame: bytes, messages: int) -> None:
        transport = self.transport
        if self._close_sent or self._closed or transport is None:
            return
        if transport.pending_bytes > self.settings.send_buffer_bytes:
            # the peer reads slower than we produce: drop it rather than buffer without end
            self.close_code, self._close_reason, self.closed_by = (
                POLICY, "send buffer full", "server")
            self._close_sent = True
            self._abort()
            return
        self.messages_out += messages
        self._write(frame)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.bytes_out += len(data)
            self.transport.write(data)

    # ---- handler callbacks -----------------------------------------------------------------------
    def _dispatch(self, fn: Callable[..., Any], *args: Any, size: int = 0) -> None:
        """Run a handler callback: inline now, or queued for the pool, in order (`size`:
        its message's, counted while it waits)."""
        if self.inline and not self._busy:
            try:
                if self._inside:  # called from a callback (its send ended the session):
                    fn(*args)     # already in the session's context, which cannot be re-entered
                else:
                    self._inside = True
                    try:
                        self.context.run(fn, *args)
                    finally:
                        self._inside = False
            except APP_ERRORS as exc:
                self._handler_failed(exc)
            return
        self._queue.append((fn, args, size))
        self._queued_bytes += size
        if self._backlogged and self.transport is not None:
            self._held = True
            self.transport.pause_reading()
        if not self._busy:
            self._run_next()

    @property
    def _backlogged(self) -> bool:
        """Too much waits for the handler: read no more until it has caught up."""
        return (len(self._queue) >= _MAX_QUEUED_CALLBACKS or self._queued_bytes
                >= max(self.settings.max_message_bytes, _MIN_QUEUED_BYTES))

    def _run_next(self) -> None:
        fn, args, size = self._queue.popleft()
        self._queued_bytes -= size
        self._busy = True
        self.loop.run_in_pool(self.context.run, (fn, *args), self._callback_done)

    def _callback_done(self, _value: Any, error: BaseException | None, _started: float) -> None:
        self._busy = False
        if isinstance(error, PoolClosed):  # never ran: the server is exiting, nor will the rest
            self._queue.clear()
            self._queued_bytes = 0
            return
        if error is not None:
            self._handler_failed(error)
        if self._queue:
            self._run_next()
        elif not self._write_paused and not self._closed:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if self.transport is None:
            return
        if self._held:
            self._held = False
            if self._ping_sent_at:  # a pong may have waited unread: a full wait from now
                self._ping_sent_at = time.monotonic()
        if self._unparsed:  # what was read comes first; reading resumes after it
            self.loop.call_soon(self._parse_more)
            return
        self.transport.resume_reading()

    def _handler_failed(self, exc: BaseException) -> None:
        self.log.error("websocket-handler-error", exc, {
            "request_id": self.request.request_id, "conn_id": self.request.conn_id,
            "path": self.request.path})
        if not self._closed:
            self.close(INTERNAL_ERROR, "handler error")

    def _end_handler(self, code: int, reason: str) -> None:
        if not self._handler_closed:
            self._handler_closed = True
            self._dispatch(self.handler.on_close, code, reason)

    # ---- the session's access line ------------------------------------------------------------
    def _log_session(self) -> None:
        request = self.request
        peer = self.transport.peer if self.transport is not None else ("", 0)
        self.log.rejected({
            "event_kind": "websocket", "conn_id": request.conn_id,
            "request_id": request.request_id, "remote_addr": peer[0], "remote_port": peer[1],
            "path": request.path, "duration_ms": round((time.monotonic() - self.started)
                                                       * 1000.0, 3),
            "messages_in": self.messages_in, "messages_out": self.messages_out,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "close_code": self.close_code, "close_reason": self._close_reason or None,
            "closed_by": self.closed_by, "deflate": self.deflate is not None,
        })
