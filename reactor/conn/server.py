"""The HTTP server of one process: accepts connections, sheds over the limit, stops them.

The registry of live connections holds transports, whatever protocol each carries now (HTTP,
or what a 101 switched to): a graceful stop asks each protocol to `shutdown()`.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Container
from typing import Any

from reactor.app.types import Application, Handler, Request, Response, as_application
from reactor.app.websocket import WebSocketUpgrade
from reactor.conn.clock import http_date
from reactor.conn.http import HttpConnection
from reactor.conn.listener import AcceptCallback, ListenerOptions
from reactor.conn.proxy import PROXY_HEADER_S, ProxyHeaderProtocol
from reactor.conn.shared import AccessRecord, HttpSettings, RequestLog
from reactor.conn.tls import Handshaking, TlsContexts, TlsTransport
from reactor.conn.transport import SocketTransport
from reactor.conn.ws import WebSocketSettings, upgrade_response
from reactor.loop import EventLoop
from reactor.loop.window import ReportWindow
from reactor.proto import response_head

# At the connection limit, how many live connections to look at for a reusable one to
# close (a bounded scan: with most of them busy, shedding must stay cheap).
_REUSE_SCAN = 100
# The warning about connections reused or shed at the limit: at most one per this many s.
_LIMIT_REPORT_S = 10.0
_REUSED, _SHED = "connections_reused_total", "connections_shed_total"


class _LogInForce:
    """The server's log at the time of each call (a `RequestLog`): a protocol made before a
    reload that changed [log] reports to the new log, not to the closed one."""

    __slots__ = ("_server",)

    def __init__(self, server: HttpServer) -> None:
        self._server = server

    def request(self, record: AccessRecord) -> None:
        self._server.log.request(record)

    def rejected(self, fields: dict[str, Any]) -> None:
        self._server.log.rejected(fields)

    def error(self, event: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        self._server.log.error(event, exc, fields)


class HttpServer:
    """What all HTTP connections share: app, settings, log sink, the live-connection registry."""

    def __init__(self, loop: EventLoop, app: Application | Handler, log: RequestLog, *,
                 settings: HttpSettings | None = None, server_name: bytes = b"reactor",
                 max_connections: int = 10000, reuse_waiting: bool = False,
                 limit_hint: str = "raise server.max_connections, or add workers") -> None:
        self.loop = loop
        self.app: Application = as_application(app)  # new requests go to it
        self.log = log  # replaced by a reload: protocols read it when they log
        self._log_in_force = _LogInForce(self)
        self.settings = settings if settings is not None else HttpSettings()
        self.server_name = server_name
        self.server_header = (b"Server", server_name)
        self.max_connections = max_connections
        # At the limit, close the oldest connection that has nothing to answer (silent, a
        # head still arriving, or idle keep-alive) rather than refuse the new one: for a small
        # listener (/metrics) that a few held connections must not fill. O(connections).
        self.reuse_waiting = reuse_waiting
        self._limit_hint = limit_hint
        self.connections: set[SocketTransport] = set()
        self.stopping = False
        self._next_conn_id = 0
        self._request_prefix = os.urandom(4).hex()
        self._request_counter = 0
        self.on_idle: Callable[[], None] | None = None  # called when the last connection goes
        self.requests_served = 0
        # PROXY-protocol listeners: who may send the header (peer addresses; ops sets the
        # [proxy] trusted networks), and how long it may take.
        self.trusted_proxies: Container[str] = frozenset()
        self.proxy_header_s = PROXY_HEADER_S
        # Counters other layers bump (TLS handshakes, WebSocket sessions, upload bytes...);
        # ops/metrics exports them. Names are "<what>_total".
        self.counters: Counter[str] = Counter()  # a missing name counts 0
        self.websocket = WebSocketSettings()  # limits and timers of new WebSocket sessions
        # At the limit: the two counters as the last warning told them; one warning per
        # window at most.
        self._limit_reported = (0, 0)
        self._limit_window = ReportWindow(loop, _LIMIT_REPORT_S, self._report_limit)

    def set_server_name(self, server_name: bytes) -> None:
        """The `Server` field value from now on (a reload turning version tokens off)."""
        self.server_name = server_name
        self.server_header = (b"Server", server_name)

    @property
    def connection_count(self) -> int:
        """Connections accepted so far (shed ones included)."""
        return self._next_conn_id

    def prepare_upgrade(self, request: Request, response: Response) -> Response:
        """A 101 the app answered, made real: an app-level upgrade (a WebSocket route) is
        mapped to its connection-layer protocol here, so the app never imports conn."""
        if isinstance(response.upgrade, WebSocketUpgrade):
            return upgrade_response(self, request, response)
        return response

    def new_request_id(self) -> str:
        self._request_counter += 1
        return f"{self._request_prefix}-{self._request_counter:x}"

    def acceptor(self, options: ListenerOptions) -> AcceptCallback:
        """The connection factory of a listener with `options` (see `ListenerOptions`).

        TLS listeners terminate TLS in the transport. With `proxy_protocol` a connection
        starts with the PROXY header step (reactor/conn/proxy.py), whose next step starts
        HTTP on a plain listener, and the handshake (then HTTP) on a TLS listener, where the
        header precedes the ClientHello: the step peeks there, leaving the ClientHello in
        the socket for `ssl`."""
        tls = options.tls
        if tls is not None:
            if options.proxy_protocol:
                return lambda sock, addr: self.accept(sock, addr, self.start_proxy_header,
                                                      tls=tls)
            return lambda sock, addr: self.accept(sock, addr, tls=tls)
        if options.proxy_protocol:
            return self.accept_proxied
        return self.accept

    def accept_proxied(self, sock: socket.socket, addr: tuple) -> None:
        """A new connection whose first bytes are a PROXY protocol header."""
        self.accept(sock, addr, start=self.start_proxy_header)

    def start_proxy_header(self, transport: SocketTransport, conn_id: int) -> None:
        """Run the PROXY header step, then HTTP (plain) or the handshake and HTTP (TLS)."""
        if isinstance(transport, TlsTransport):
            transport.start_preamble(ProxyHeaderProtocol(
                self.loop, self._log_in_force, conn_id, trusted=self.trusted_proxies,
                then=self.start_tls, timeout_s=self.proxy_header_s))
            return
        transport.start(ProxyHeaderProtocol(
            self.loop, self._log_in_force, conn_id, trusted=self.trusted_proxies,
            then=self.start_http, timeout_s=self.proxy_header_s))

    def start_tls(self, transport: SocketTransport, conn_id: int,
                  trailing_data: bytes = b"") -> None:
        """The handshake, then HTTP, after a step that left the ClientHello in the socket (a
        peeking step hands over no bytes: there is nowhere to feed them to `ssl`)."""
        assert not trailing_data
        transport.start(HttpConnection(self, conn_id))

    def start_http(self, transport: SocketTransport, conn_id: int,
                   trailing_data: bytes = b"") -> None:
        """Run HTTP on `transport` (after an earlier step, with the bytes it left over)."""
        transport.set_protocol(HttpConnection(self, conn_id), trailing_data)

    def accept(self, sock: socket.socket, addr: tuple,
               start: Callable[[SocketTransport, int], None] | None = None, *,
               tls: TlsContexts | None = None) -> None:
        """A new connection from a listener, which made it non-blocking with Nagle off: TLS
        terminated here when `tls` is given; `start` runs its first protocol (HTTP if None)."""
        self._next_conn_id += 1
        conn_id = self._next_conn_id
        peer = (addr[0], addr[1]) if addr else ("", 0)
        if self.stopping:
            self._shed(sock, conn_id, peer, answer=tls is None)
            return
        if len(self.connections) >= self.max_connections and not self._reuse_idle():
            self._shed(sock, conn_id, peer, answer=tls is None)
            self._limit_reached(_SHED)
            return
        transport: SocketTransport
        if tls is None:
            transport = SocketTransport(self.loop, sock, peer, on_closed=self.connection_gone)
        else:
            transport = TlsTransport(self.loop, sock, peer, tls, conn_id=conn_id,
                                     report=self._report_rejected,
                                     on_closed=self.connection_gone, counters=self.counters)
        self.connections.add(transport)
        if start is None:
            transport.start(HttpConnection(self, conn_id))
        else:
            start(transport, conn_id)

    def _reuse_idle(self) -> bool:
        """At the limit: close the oldest `reusable` connection (idle keep-alive, or one that
        has sent nothing yet) to make room for the new one, as nginx reuses such connections
        (oldest first: the newest is about to speak) when its worker_connections run out. A
        client expects an idle connection to close (it retries); a 503 is a refusal, and
        silent connections must not hold every slot until their header timeout. With
        `reuse_waiting`, a connection whose head is still arriving counts too
        (`awaiting_request`)."""
        waiting = self.reuse_waiting
        oldest: HttpConnection | Handshaking | ProxyHeaderProtocol | None = None
        for looked, transport in enumerate(self.connections):
            protocol = transport.protocol
            if (isinstance(protocol, (HttpConnection, Handshaking, ProxyHeaderProtocol))
                    and (oldest is None or protocol.conn_id < oldest.conn_id)
                    and (protocol.awaiting_request if waiting else protocol.reusable)):
                oldest = protocol
            if looked >= _REUSE_SCAN:
                break
        if oldest is None:
            return False
        oldest.close_idle()
        self._limit_reached(_REUSED)
        return True

    def _limit_reached(self, counter: str) -> None:
        """Count a connection reused or shed at the limit; warn at most every 10 s, with
        what the two counters gained since the last warning."""
        self.counters[counter] += 1
        self._limit_window.note()

    def _report_limit(self) -> bool:
        counters = self.counters
        reused, shed = counters[_REUSED], counters[_SHED]
        last_reused, last_shed = self._limit_reported
        if (reused, shed) == (last_reused, last_shed):
            return False
        self._limit_reported = (reused, shed)
        self.loop.report("connection-limit-reached", {
            "max_connections": self.max_connections, "idle_closed": reused - last_reused,
            "refused_503": shed - last_shed,
            "message": self._limit_hint})
        return True

    def _report_rejected(self, fields: dict[str, Any]) -> None:
        self.log.rejected(fields)  # the log in force now (a reload replaces it)

    def _shed(self, sock: socket.socket, conn_id: int, peer: tuple[str, int], *,
              answer: bool = True) -> None:
        """Over the connection limit: a best-effort 503 and close, never a wait (a TLS
        client, which could not read a plaintext answer, is just closed)."""
        body = b"Service Unavailable: too many connections\n"
        head = response_head(503, [self.server_header, (b"Date", http_date()),
                                   (b"Content-Type", b"text/plain; charset=utf-8"),
                                   (b"Content-Length", b"%d" % len(body)),
                                   (b"Connection", b"close"), (b"Retry-After", b"1"),
                                   (b"X-Request-ID", self.new_request_id().encode("ascii"))])
        try:
            if answer:
                sock.send(head + body)
        except OSError:
            pass
        sock.close()
        self.log.rejected({"conn_id": conn_id, "remote_addr": peer[0], "remote_port": peer[1],
                           "status": 503, "reason": "connection-limit",
                           "event_kind": "conn_shed"})

    def connection_gone(self, transport: SocketTransport) -> None:
        self.connections.discard(transport)
        if not self.connections and self.on_idle is not None:
            self.on_idle()

    def shutdown_connections(self) -> None:
        """Graceful stop: no new requests; idle connections close now, busy ones after."""
        self.stopping = True
        for transport in list(self.connections):
            protocol = transport.protocol
            if protocol is not None:
                protocol.shutdown()

    def abort_connections(self) -> None:
        """The shutdown deadline passed: drop every connection still open, now.

        Each one's `connection_lost` runs at once, so an upload in progress is aborted: its
        clean-up is queued to the pool, which runs it before its threads are joined.
        """
        self.stopping = True
        for transport in list(self.connections):
            transport.abort()
