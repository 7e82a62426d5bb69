"""CPU cost of the load-balancer features: PROXY header parsing, the PROXY step per
connection, and what the health/trusted-proxy wrappers and the metrics add per request.

`python -m bench.lb [--requests N]` prints best-of-15 CPU times (µs). The per-request
figures are differences of two `bench.hotpath` runs, so read them to a few tenths of a µs.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from bench.hotpath import measure
from reactor.app.proxy import TrustedNetworks
from reactor.conn.proxy import ProxyHeaderProtocol
from reactor.loop import EventLoop
from reactor.proto.proxyproto import V2_SIGNATURE, ProxyHeaderParser

V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"
V2 = (V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 12) + socket.inet_aton("203.0.113.7")
      + socket.inet_aton("10.0.0.1") + struct.pack("!HH", 51234, 443))
REQUEST = b"GET /echo/abc HTTP/1.1\r\nHost: x\r\n\r\n"


def best_per_call(fn: Callable[[], Any], calls: int, rounds: int = 15) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - started)
    return best / calls


class _Transport:
    peer = ("127.0.0.1", 40000)

    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}

    def close(self) -> None:
        return None


class _Log:
    def rejected(self, fields: dict[str, Any]) -> None:
        raise AssertionError(fields)


def proxy_step(loop: EventLoop, trusted: TrustedNetworks) -> Callable[[], None]:
    """One connection's PROXY step: trust check, timer, parse, extra, hand-off."""
    def then(transport: Any, conn_id: int, trailing: bytes) -> None:
        assert trailing == REQUEST

    def run() -> None:
        step = ProxyHeaderProtocol(loop, _Log(), 1, trusted=trusted, then=then)  # type: ignore[arg-type]
        step.connection_made(_Transport())  # type: ignore[arg-type]
        step.data_received(V2 + REQUEST)
    return run


def metrics_observe() -> Callable[[], None]:
    from reactor.app.types import Headers, Request, Response
    from reactor.conn.shared import AccessRecord
    from reactor.ops.metrics import Metrics

    request = Request("GET", "/echo/abc", "", "HTTP/1.1", Headers([]))
    record = AccessRecord(request, Response(200), 1, 120, 0, None)
    record.duration_ms = 0.07
    observe = Metrics().observe
    return lambda: observe(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lb")
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args(argv)
    calls = args.requests
    v1 = best_per_call(lambda: ProxyHeaderParser().feed(V1 + REQUEST), calls)
    v2 = best_per_call(lambda: ProxyHeaderParser().feed(V2 + REQUEST), calls)
    loop = EventLoop(pool_threads=1)
    try:
        step = best_per_call(proxy_step(loop, TrustedNetworks(["127.0.0.1", "10.0.0.0/8"])),
                             calls)
    finally:
        loop.close()
    print(f"PROXY v1 header parse: {v1 * 1e6:.2f} µs per connection")
    print(f"PROXY v2 header parse: {v2 * 1e6:.2f} µs per connection")
    print(f"PROXY step (trust check, deadline timer, parse, hand-off): {step * 1e6:.2f} µs"
          " per connection")
    observe = best_per_call(metrics_observe(), calls)
    print(f"Metrics.observe (one finished request): {observe * 1e6:.2f} µs")
    plain = measure("/dev/null", calls)
    wrapped = measure("/dev/null", calls, lb=True)
    counted = measure("/dev/null", calls, lb=True, metrics=True)
    print(f"/echo request, plain app: {plain * 1e6:.2f} µs")
    print(f"  + health and trusted-proxy wrappers: {(wrapped - plain) * 1e6:+.2f} µs")
    print(f"  + metrics (counters, histogram): {(counted - wrapped) * 1e6:+.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
