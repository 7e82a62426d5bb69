"""The PROXY-protocol step of a connection: read the header, then hand the transport on.

Strategy
--------
A listener with `proxy_protocol` starts each connection with `ProxyHeaderProtocol` instead
of HTTP. It refuses a peer outside `[proxy] trusted` at once (anyone could otherwise claim
any client address), reads the header under its own short deadline with the sans-IO parser
(reactor/proto/proxyproto.py), records what it said in `transport.extra` and calls `then`
-- the next step -- with the bytes that followed the header. A bad, missing or late header
closes the connection with one access-log line (`event: proxy_rejected`) and nothing sent:
the peer is a proxy, not a client that could read an HTTP error.

The next step is any `NextStep(transport, conn_id, trailing_data)`. On a plain listener the
transport reads and feeds `data_received`, and the server's next step starts HTTP with the
bytes that followed the header (`transport.set_protocol(HttpConnection(...), trailing)`).
On a TLS listener the header precedes the ClientHello on the wire, and `ssl` wraps the
socket itself: the handshake cannot be fed bytes already read. There the same protocol
runs in peek mode (`TlsTransport.start_preamble`): the transport peeks at the waiting bytes
and calls `peeked`, which feeds the same parser and says how many of them were header; the
transport takes exactly those off the socket, so the ClientHello stays there, and the next
step (trailing data always empty) starts the handshake, whose timeout starts only then.
Every rule (trusted peers, deadline, refusal line) is this one class's in both modes.

`transport.extra` gets: `client_addr`, `client_port` (the header's source, when it has
one), `proxy_source` (that (address, port), or None for LOCAL/UNKNOWN), `proxy_header` (the
`ProxyHeader`) and, when the proxy terminated TLS (v2 SSL TLV), `scheme = "https"`.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from reactor.conn.interfaces import Transport
from reactor.conn.shared import RequestLog
from reactor.loop import EventLoop, TimerHandle
from reactor.proto.proxyproto import ProxyHeader, ProxyHeaderParser, ProxyProtocolError

PROXY_HEADER_S = 5.0
NextStep = Callable[[Any, int, bytes], None]
"""(transport, conn_id, trailing_data): what runs the connection after the header."""


class ProxyHeaderProtocol:
    """A `StreamProtocol` that only reads the PROXY header, then hands over; also a
    `PeekingProtocol`, for the header in front of a TLS handshake."""

    __slots__ = ("_parser", "_timer", "conn_id", "done", "log", "loop", "then", "timeout_s",
                 "transport", "trusted")

    def __init__(self, loop: EventLoop, log: RequestLog, conn_id: int, *,
                 trusted: Container[str], then: NextStep,
                 timeout_s: float = PROXY_HEADER_S) -> None:
        self.loop = loop
        self.log = log
        self.conn_id = conn_id
        self.trusted = trusted
        self.then = then
        self.timeout_s = timeout_s
        self.transport: Transport | None = None
        self._parser = ProxyHeaderParser()
        self._timer: TimerHandle | None = None
        self.done = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        if transport.peer[0] not in self.trusted:
            self._refuse("proxy-untrusted-peer")
            return
        self._timer = self.loop.call_later(self.timeout_s, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            header = self._parser.feed(data)
        except ProxyProtocolError as exc:
            self._refuse(exc.reason)
            return
        if header is not None:
            self._handover(header, self._parser.trailing_data)

    # ---- peek mode (a TLS listener) -------------------------------------------------------
    @property
    def peek_bytes(self) -> int:
        """No more than this can still be header: the transport peeks no further."""
        return self._parser.max_wanted

    def peeked(self, data: bytes) -> int:
        """`data` waits in the socket, none of it taken: feed it to the parser and return
        how many of its bytes are header bytes (all of them while the header is incomplete;
        0 after a refusal). The transport must take exactly those off the socket before it
        reads again; whatever follows the header stays there for the next step, which is
        handed no trailing data."""
        if self.done:
            return 0
        try:
            header = self._parser.feed(data)
        except ProxyProtocolError as exc:
            self._refuse(exc.reason)
            return 0
        if header is None:
            return len(data)  # a prefix of a header: consumed, so the socket is not readable
        used = len(data) - len(self._parser.trailing_data)  # the rest: never in the buffer
        self._handover(header, b"")
        return used

    def _handover(self, header: ProxyHeader, trailing_data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.done = True
        self._cancel_timer()
        extra = transport.extra
        extra["proxy_header"] = header
        extra["proxy_source"] = header.source
        if header.source is not None:
            extra["client_addr"], extra["client_port"] = header.source
        if header.tls:
            extra["scheme"] = "https"
        self.then(transport, self.conn_id, trailing_data)

    def eof_received(self) -> None:
        if not self.done:
            self._refuse("proxy-header-eof" if self._parser.buffered else "proxy-no-header")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.done = True
        self._cancel_timer()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def write_blocked(self) -> None:
        pass

    @property
    def reusable(self) -> bool:
        """No byte of the header yet, read or waiting: a silent connection, which the
        server closes first at its connection limit (as a plain one that has sent nothing;
        nginx's reusable connection)."""
        transport = self.transport
        return (not self.done and not self._parser.buffered and transport is not None
                and not transport.input_waiting)

    awaiting_request = reusable

    def close_idle(self) -> None:
        """Closed to make room: as a graceful stop closes it, without a line."""
        self.shutdown()

    def shutdown(self) -> None:
        """Graceful stop: nothing of a request has arrived yet, so close now."""
        if not self.done:
            self.done = True
            self._cancel_timer()
            if self.transport is not None:
                self.transport.close()

    def _timed_out(self) -> None:
        self._timer = None
        if not self.done:
            self._refuse("proxy-header-timeout")

    def _refuse(self, reason: str) -> None:
        self.done = True
        self._cancel_timer()
        transport = self.transport
        peer = transport.peer if transport is not None else ("", 0)
        self.log.rejected({"conn_id": self.conn_id, "remote_addr": peer[0],
                           "remote_port": peer[1], "reason": reason,
                           "event_kind": "proxy_rejected"})
        if transport is not None:
            transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
