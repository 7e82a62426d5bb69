"""The HTTP server of one process: accepts connections, sheds over the limit, stops them.

The registry of live connections holds transports, whatever protocol each carries now (HTTP,
or what a 101 switched to): a graceful stop asks each protocol to `shutdown()`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from reactor.app.types import Application, Handler, Request, Response, as_application
from reactor.app.websocket import WebSocketUpgrade
from reactor.conn.clock import http_date
from reactor.conn.http import HttpConnection
from reactor.conn.listener import AcceptCallback, ListenerOptions
from reactor.conn.shared import HttpSettings, RequestLog
from reactor.conn.transport import SocketTransport
from reactor.conn.ws import WebSocketSettings, upgrade_response
from reactor.loop import EventLoop
from reactor.proto import response_head


class HttpServer:
    """What all HTTP connections share: app, settings, log sink, the live-connection registry."""

    def __init__(self, loop: EventLoop, app: Application | Handler, log: RequestLog, *,
                 settings: HttpSettings | None = None, server_name: bytes = b"reactor",
                 max_connections: int = 10000) -> None:
        self.loop = loop
        self._app = as_application(app)
        self.log = log
        self.settings = settings if settings is not None else HttpSettings()
        self.server_name = server_name
        self.server_header = (b"Server", server_name)
        self.max_connections = max_connections
        self.connections: set[SocketTransport] = set()
        self.stopping = False
        self._next_conn_id = 0
        self._request_prefix = os.urandom(4).hex()
        self._request_counter = 0
        self.on_idle: Callable[[], None] | None = None  # called when the last connection goes
        self.requests_served = 0
        self.websocket = WebSocketSettings()  # limits and timers of new WebSocket sessions

    @property
    def app(self) -> Application:
        """The application new requests go to (a plain handler function is adapted)."""
        return self._app

    @app.setter
    def app(self, app: Application | Handler) -> None:
        self._app = as_application(app)

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
        """The connection factory of a listener with `options` (see `ListenerOptions`)."""
        return self.accept

    def accept(self, sock: socket.socket, addr: tuple) -> None:
        """A new connection from a listener."""
        self._next_conn_id += 1
        conn_id = self._next_conn_id
        try:
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:  # a socket-activated unix socket has no Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            return
        peer = (addr[0], addr[1]) if addr else ("", 0)
        if self.stopping or len(self.connections) >= self.max_connections:
            self._shed(sock, conn_id, peer)
            return
        transport = SocketTransport(self.loop, sock, peer, on_closed=self.connection_gone)
        self.connections.add(transport)
        transport.start(HttpConnection(self, conn_id))

    def _shed(self, sock: socket.socket, conn_id: int, peer: tuple[str, int]) -> None:
        """Over the connection limit: a best-effort 503 and close, never a wait."""
        body = b"Service Unavailable: too many connections\n"
        head = response_head(503, [self.server_header, (b"Date", http_date()),
                                   (b"Content-Type", b"text/plain; charset=utf-8"),
                                   (b"Content-Length", b"%d" % len(body)),
                                   (b"Connection", b"close"), (b"Retry-After", b"1"),
                                   (b"X-Request-ID", self.new_request_id().encode("ascii"))])
        try:
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
