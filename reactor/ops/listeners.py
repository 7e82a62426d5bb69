"""The server's listening sockets: bound from `server.listen` and `[[server.listeners]]` or
passed in by systemd, and re-bound on reload.

Strategy: a socket we bound is remembered by the configured address that bound it
("127.0.0.1:0", not the port the kernel picked), so a reload that keeps an address keeps its
socket, and only added or removed addresses change anything. A reload binds every added
address before anything is closed (`prepare`); if one fails, the new sockets are closed and
the running ones stay (`Rebind.discard`). Sockets passed by socket activation belong to the
service manager: they are served as they are and never re-bound.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reactor.conn.listener import Acceptor, Listener, ListenerOptions, bind_tcp
from reactor.loop import EventLoop
from reactor.ops.kinds import format_listen, parse_listen


class ListenError(Exception):
    """An address could not be bound; str() is one line naming it."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(address, reason)
        self.address = address
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot listen on {self.address}: {self.reason}"


def bind_addresses(addresses: Iterable[str], backlog: int, *, reuse_port: bool = False
                   ) -> dict[str, socket.socket]:
    """A listening socket per "HOST:PORT"; all or none (ListenError closes those bound).
    `reuse_port` (worker processes) lets twins of each socket share its address."""
    bound: dict[str, socket.socket] = {}
    try:
        for address in addresses:
            host, port = parse_listen(address)
            try:
                if reuse_port and port:
                    _probe(host, port)
                bound[address] = bind_tcp(host, port, backlog=backlog, reuse_port=reuse_port)
            except OSError as exc:
                raise ListenError(address, exc.strerror or str(exc)) from None
    except BaseException:
        close_sockets(bound.values())
        raise
    return bound


def _probe(host: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) if someone already listens on (host, port).

    With SO_REUSEPORT the kernel lets any socket of the same user join a listening group:
    a second instance (workers > 1, so SO_REUSEPORT) would bind "successfully" and take a
    share of the first one's connections. A socket bound without SO_REUSEPORT is refused
    by any listener there, reuse-port or not, as a one-process server's is. It is bound
    only (never listening, so it cannot take a connection) and closed again at once; a
    start racing ours in between is not caught (rare, and no worse than before)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as bind_tcp's
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((host, port))


def close_sockets(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@dataclass
class Rebind:
    """Sockets bound for a reload, not yet serving: commit them or discard them."""

    added: dict[str, socket.socket] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    backlog: int = 0
    options: dict[str, ListenerOptions] = field(default_factory=dict)
    """The options of every configured listener after the reload, by address."""

    def discard(self) -> None:
        close_sockets(self.added.values())
        self.added.clear()


def activated_options(sock: socket.socket) -> ListenerOptions:
    """Options for a socket the service manager passed: its address describes it."""
    try:
        name = sock.getsockname()
    except OSError:
        name = None
    where = format_listen(*name[:2]) if isinstance(name, tuple) else f"unix:{name!r}"
    return ListenerOptions(address=f"{where} (socket-activated fd {sock.fileno()})")


class Listeners:
    """Every listener of the server: by configured address, plus socket-activated ones.

    Each listener gets its accept callback from `acceptor(options)`, so per-listener options
    (TLS, PROXY protocol) decide how its connections are made.
    """

    def __init__(self, loop: EventLoop, acceptor: Acceptor, *,
                 bound: dict[str, socket.socket] | None = None,
                 options: Sequence[ListenerOptions] = (),
                 activated: Sequence[socket.socket] = ()) -> None:
        self._loop = loop
        self._acceptor = acceptor
        given = {o.address: o for o in options}
        self.by_address = {
            address: self._listener(sock, given.get(address, ListenerOptions(address)))
            for address, sock in (bound or {}).items()}
        self.activated = [self._listener(sock, activated_options(sock)) for sock in activated]
        self._started = False

    def _listener(self, sock: socket.socket, options: ListenerOptions) -> Listener:
        return Listener(self._loop, sock, self._acceptor(options), options)

    def all(self) -> list[Listener]:
        return [*self.activated, *self.by_address.values()]

    def sockets(self) -> list[socket.socket]:
        return [listener.sock for listener in self.all()]

    def start(self) -> None:
        self._started = True
        for listener in self.all():
            listener.start()

    def close(self) -> None:
        """Stop accepting and close every listening socket (connections are not touched)."""
        self._started = False
        for listener in self.all():
            try:
                listener.close()
            except OSError:
                pass

    def prepare(self, options: Sequence[ListenerOptions], backlog: int) -> Rebind:
        """Bind the listeners in `options` whose address is not bound yet. Raises ListenError,
        having closed what it bound; the running listeners are untouched either way."""
        wanted = {o.address: o for o in options}
        if self.activated:
            return Rebind(backlog=backlog)  # the service manager owns the sockets
        added = bind_addresses([a for a in wanted if a not in self.by_address], backlog)
        removed = [address for address in self.by_address if address not in wanted]
        return Rebind(added, removed, backlog, wanted)

    def commit(self, rebind: Rebind) -> None:
        """Serve the added sockets, close the removed ones, apply the backlog and any changed
        options to the kept ones (same socket, a new accept callback)."""
        for address in rebind.removed:
            self.by_address.pop(address).close()
        for address, listener in list(self.by_address.items()):
            try:
                listener.sock.listen(rebind.backlog)  # Linux adjusts a live accept queue
            except OSError:
                pass
            options = rebind.options.get(address, listener.options)
            if options != listener.options:
                listener.stop()
                self.by_address[address] = replacement = self._listener(listener.sock, options)
                if self._started:
                    replacement.start()
        for address, sock in rebind.added.items():
            listener = self._listener(sock, rebind.options.get(address, ListenerOptions(address)))
            self.by_address[address] = listener
            if self._started:
                listener.start()
        rebind.added = {}
