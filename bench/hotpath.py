"""CPU cost of one request through conn + proto + app + access log, without sockets.

`python -m bench.hotpath [--log off|FILE] [--requests N] [--lb] [--metrics]` feeds
`GET /echo/abc` to a real `HttpConnection` whose transport only collects output, and prints
the best CPU time per request over 15 rounds. `--lb` serves the app as `reactor serve` wraps
it (health paths, trusted-proxy headers); `--metrics` feeds every request to the Prometheus
counters as well (ops/metrics.py). wrk on this 2-core VM moves ±20% between runs; this
number moves a few percent, so use it to judge a hot-path change, and wrk (`make bench`) to
report throughput.
"""

from __future__ import annotations

import argparse
import time
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
            metrics: bool = False) -> float:
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
        connection = HttpConnection(HttpServer(loop, app, log), 1)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    parser.add_argument("--log", default="/dev/null", help='access log target ("off" = none)')
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--lb", action="store_true",
                        help="wrap the app as `reactor serve` does (health, trusted proxies)")
    parser.add_argument("--metrics", action="store_true", help="count requests for /metrics")
    args = parser.parse_args(argv)
    per_request = measure(args.log, args.requests, lb=args.lb, metrics=args.metrics)
    extras = "".join(f", {name}" for name, on in (("lb wrappers", args.lb),
                                                  ("metrics", args.metrics)) if on)
    print(f"{per_request * 1e6:.1f} µs CPU per /echo request (access log: {args.log}{extras})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
