"""WebSocket endpoints as the application sees them: handlers, the session handle, broadcast.

Strategy: a WebSocket route answers the upgrade request with `Response(101, upgrade=
WebSocketUpgrade(...))`; the connection layer checks the handshake, answers the 101 (or a
400/426 with the reason) and runs the session, calling the handler's `on_open`,
`on_message` and `on_close` one at a time, in order -- on a pool thread by default, on the
loop for a handler marked `inline` -- and all of them, the factory too, in one
`contextvars` context of the session's own: a copy of the upgrade request's (what its
middleware set, the user it authenticated, is seen by the handler; what the handler sets
is seen by no other session or request). The handler holds a `WebSocket` (`self.ws`) whose
`send()` may be called from any thread: the connection queues it to the loop. Nothing here
knows about sockets, threads or frames; the connection provides a `WebSocketChannel`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import Context, copy_context
from typing import Protocol

from reactor.app.types import Request, Response


class WebSocketChannel(Protocol):
    """What the connection layer gives a session (safe to call from any thread)."""

    def send(self, data: str | bytes) -> None: ...
    def send_frame(self, frame: bytes) -> None: ...
    def encode(self, data: str | bytes) -> bytes: ...
    def close(self, code: int, reason: str) -> None: ...
    @property
    def open(self) -> bool: ...


class WebSocket:
    """One open WebSocket session: its upgrade request, and how to send on it."""

    __slots__ = ("_channel", "request", "subprotocol")

    def __init__(self, request: Request, channel: WebSocketChannel,
                 subprotocol: str | None = None) -> None:
        self.request = request
        self.subprotocol = subprotocol
        self._channel = channel

    @property
    def params(self) -> dict[str, bytes]:
        """The route's `{name}` parameters, percent-decoded bytes."""
        return self.request.params

    @property
    def open(self) -> bool:
        """False once the close handshake began or the connection is gone."""
        return self._channel.open

    def send(self, data: str | bytes) -> None:
        """Send a text (str) or binary (bytes) message; from any thread. Dropped when closed."""
        self._channel.send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (any thread)."""
        self._channel.close(code, reason)

    def __repr__(self) -> str:
        return f"<WebSocket {self.request.path}>"


class WebSocketHandler:
    """Base class of a WebSocket endpoint; one instance per session.

    Override what you need. Callbacks run one at a time in arrival order: in the pool by
    default (they may block), on the loop when the class sets `inline = True` (they must
    not). `on_close` runs once, whoever closed: `code` 1005 when the peer sent none, 1006
    when the connection broke without a close handshake.
    """

    inline = False
    ws: WebSocket

    def on_open(self) -> None:
        return None

    def on_message(self, data: str | bytes) -> None:
        return None

    def on_close(self, code: int, reason: str) -> None:
        return None


HandlerFactory = Callable[[], WebSocketHandler]


class WebSocketUpgrade:
    """What a WebSocket route puts in its 101 response's `upgrade`: the connection layer
    validates the handshake and runs a session with a handler made by `factory`."""

    __slots__ = ("context", "factory", "inline", "origins", "request", "subprotocols")

    def __init__(self, factory: HandlerFactory, request: Request, *, inline: bool = False,
                 subprotocols: tuple[str, ...] = (),
                 origins: tuple[str, ...] | None = None) -> None:
        self.factory = factory
        self.request = request
        self.inline = inline
        self.subprotocols = subprotocols  # the first the client offers is chosen
        self.origins = origins  # None: any Origin; else only these (403 otherwise)
        # Made in the upgrade request's context (the route handler runs in it): the
        # session's callbacks run in this copy.
        self.context: Context = copy_context()

    def __call__(self) -> object:
        """`Response.upgrade` is a protocol factory; this one is mapped by the connection
        layer (HttpServer.prepare_upgrade) before the 101 is sent, never called."""
        raise TypeError("a WebSocket upgrade is served by reactor's HttpServer")


def websocket_endpoint(factory: HandlerFactory, *, inline: bool | None = None,
                       subprotocols: Iterable[str] = (),
                       origins: Iterable[str] | None = None) -> Callable[[Request], Response]:
    """A GET route handler answering the upgrade for `factory`'s sessions."""
    run_inline = bool(getattr(factory, "inline", False)) if inline is None else inline
    protocols = tuple(subprotocols)
    allowed = tuple(origins) if origins is not None else None

    def upgrade(request: Request) -> Response:
        return Response(101, [], upgrade=WebSocketUpgrade(
            factory, request, inline=run_inline, subprotocols=protocols, origins=allowed))
    return upgrade


def broadcast(sockets: Iterable[WebSocket], data: str | bytes) -> int:
    """Send one message to many sessions, encoding its frame once; returns how many got it.

    The frame is uncompressed, which every session accepts, deflate or not.
    """
    frame: bytes | None = None
    sent = 0
    for ws in sockets:
        channel = ws._channel
        if not channel.open:
            continue
        if frame is None:
            frame = channel.encode(data)
        channel.send_frame(frame)
        sent += 1
    return sent


class Echo(WebSocketHandler):
    """The built-in `/ws/echo`: every message goes back as it came (on the loop)."""

    inline = True

    def on_message(self, data: str | bytes) -> None:
        self.ws.send(data)
