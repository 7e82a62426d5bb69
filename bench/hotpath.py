"""CPU cost of one /echo request through conn, proto, app and access log (--socket: + loop).

`python -m bench.hotpath [--log off|FILE] [--requests N] [--lb] [--metrics] [--socket]`
feeds `GET /echo/abc` to a real `HttpConnection` whose transport only collects output, and
prints the best CPU time per request over 15 rounds. `--lb` serves the app as `reactor serve`
wraps it (health paths, trusted-proxy headers); `--metrics` feeds every request to the
Prometheus counters as well (ops/metrics.py). `--socket` runs the real event loop and
socket transport instead, over a loopback TCP connection whose client end the bench drives in
the same thread (one request, one loop pass, one response), and also prints the floor: the
same exchange as bare `epoll` + `recv` + `send` calls, no server code. Socket figure minus
floor minus the plain figure is what the loop and the transport cost per request.

wrk on this 2-core VM moves ±20% between runs; this number moves a few percent, so use it
to judge a hot-path change, and wrk (`make bench`) to report throughput.
"""

from __future__ import annotations

import argparse
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from reactor.app.application import build_app
from reactor.conn.http import HttpConnection
from reactor.conn.server import HttpServer
from reactor.loop import EventLoop
from reactor.ops.logging import ServerLog

REQUEST = b"GET /echo/abc HTTP/1.1\r\nHost: localhost:4221\r\nUser-Agent: wrk\r\n\r\n"


class CollectingTransport:
    """Stands in for the socket transport: output is kept (and dropped), markers run now."""

    peer = ("127.0.0.1", 50000)
    extra: dict[str, Any] = {}
    writing_blocked = False
    pending_bytes = 0

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def try_write(self, data: bytes) -> bool:
        self.out.append(data)
        return True

    def write_many(self, *chunks: bytes) -> None:
        self.out.extend(chunks)

    def when_sent(self, callback: Any, *args: Any) -> None:
        callback(*args)

    def is_closing(self) -> bool:
        return False

    @property
    def protocol(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self, linger: bool = False) -> None:
        return None


def measure(log_target: str, requests: int, rounds: int = 15, *, lb: bool = False,
            metrics: bool = False, over_socket: bool = False) -> float:
    """Best CPU seconds per request over `rounds` rounds of `requests` requests."""
    loop = EventLoop(pool_threads=1)
    log = ServerLog(access=log_target, error="stderr")
    try:
        app: Any = build_app(directory=None)
        if lb:
            from reactor.app.health import SERVING, Readiness
            from reactor.ops.assembly import wrap_app
            from reactor.ops.settings import Config
            app = wrap_app(app, Config(), Readiness(SERVING))
        if metrics:
            from reactor.ops.metrics import Metrics
            log.observer = Metrics().observe
        server = HttpServer(loop, app, log)
        if over_socket:
            return _measure_socket(loop, server, log, requests, rounds)
        connection = HttpConnection(server, 1)
        transport = CollectingTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        for _ in range(2000):  # warm caches (header blocks, accept-encoding, dates)
            connection.data_received(REQUEST)
        best = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            for i in range(requests):
                connection.data_received(REQUEST)
                if i % 64 == 0:  # the loop flushes logs and the socket about this often
                    log.flush()
                    transport.out.clear()
            best = min(best, time.process_time() - started)
        return best / requests
    finally:
        log.close()
        loop.close()


def _loopback_pair() -> tuple[socket.socket, socket.socket, tuple]:
    """(server end, client end, client address) of a TCP connection on 127.0.0.1, Nagle off
    on both, the server end non-blocking (as a Listener hands it over)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, addr = listener.accept()
    listener.close()
    for end in (accepted, client):
        end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accepted.setblocking(False)
    return accepted, client, addr


def _measure_socket(loop: EventLoop, server: HttpServer, log: ServerLog, requests: int,
                    rounds: int) -> float:
    accepted, client, addr = _loopback_pair()
    server.accept(accepted, addr)
    run_once = loop._run_once  # one pass: the selector wakes for the request, answers it
    try:
        def exchange() -> bytes:
            client.sendall(REQUEST)
            run_once()
            return client.recv(65536)
        client.settimeout(5.0)  # the first answer: never hang on a server that fails
        answer = exchange()
        if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(b"\r\n\r\nabc"):
            raise RuntimeError(f"unexpected answer over the socket: {answer[:80]!r}")
        client.settimeout(None)  # a timeout adds a poll() before each call: not measured

        def exchange_logged(i: int) -> None:
            exchange()
            if i % 64 == 0:
                log.flush()
        return _best_per_call(exchange_logged, requests, rounds)
    finally:
        client.close()
        for transport in list(server.connections):
            transport.abort()


_FLOOR_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc"


def measure_floor(requests: int, rounds: int = 15) -> float:
    """The kernel's and the socket calls' share alone: `_measure_socket`'s exchange made of
    bare `epoll.poll`, `recv` and `send` on both ends, with no server code in between."""
    server, client, _addr = _loopback_pair()
    poller = select.epoll()
    try:
        poller.register(server.fileno(), select.EPOLLIN)

        def exchange(_i: int) -> None:
            client.sendall(REQUEST)
            poller.poll(0)
            server.recv(65536)
            server.send(_FLOOR_ANSWER)
            client.recv(65536)
        return _best_per_call(exchange, requests, rounds)
    finally:
        poller.close()
        client.close()
        server.close()


def _best_per_call(call: Callable[[int], None], requests: int, rounds: int) -> float:
    """After 2000 warm-up calls, the best CPU seconds per `call(i)` over `rounds` rounds."""
    for i in range(2000):
        call(i)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for i in range(requests):
            call(i)
        best = min(best, time.process_time() - started)
    return best / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    parser.add_argument("--log", default="/dev/null", help='access log target ("off" = none)')
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--lb", action="store_true",
                        help="wrap the app as `reactor serve` does (health, trusted proxies)")
    parser.add_argument("--metrics", action="store_true", help="count requests for /metrics")
    parser.add_argument("--socket", action="store_true",
                        help="through the real loop and transport over loopback TCP")
    args = parser.parse_args(argv)
    per_request = measure(args.log, args.requests, lb=args.lb, metrics=args.metrics,
                          over_socket=args.socket)
    extras = "".join(f", {name}" for name, on in (("lb wrappers", args.lb),
                                                  ("metrics", args.metrics),
                                                  ("loop + socket", args.socket)) if on)
    print(f"{per_request * 1e6:.1f} µs CPU per /echo request (access log: {args.log}{extras})")
    if args.socket:
        floor = measure_floor(args.requests)
        print(f"{floor * 1e6:.1f} µs CPU per exchange of the floor (epoll + recv + send, both"
              " ends, no server code)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
