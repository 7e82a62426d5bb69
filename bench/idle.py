"""idle10k: hold many idle keep-alive connections, measure memory and fresh latency.

The harness itself is the client (pinned to the client CPU). Connections are opened
in batches; each sends one ``GET /echo/abc`` and reads the whole response, so the
server has really accepted and served it. With all of them held idle, the server's
RSS growth per connection is taken from ``/proc/PID/status`` (VmRSS, summed over
its process group), then ``samples`` sequential requests are timed, each on a new
connection (connect + request + response).
"""

from __future__ import annotations

import contextlib
import errno
import math
import re
import selectors
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench import HOST

REQUEST = b"GET /echo/abc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
MAX_SAMPLE_ERRORS = 5
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class IdleResult:
    """Outcome of one idle10k run."""

    target: int
    opened: int
    still_open: int
    open_errors: int
    open_seconds: float
    rss_before_kib: int
    rss_after_kib: int
    samples: int
    sample_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def kib_per_conn(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.opened if self.opened else 0.0


def response_complete(buf: bytes) -> bool:
    """True once ``buf`` holds a whole response (Content-Length or chunked body)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end]
    if b"chunked" in head.lower():
        return buf.endswith(b"0\r\n\r\n")
    match = _LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    return len(buf) >= end + 4 + length


class _Conn:
    __slots__ = ("buf", "sent", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sent = False
        self.buf = b""


def _step(sel: selectors.BaseSelector, conn: _Conn, mask: int) -> bool | None:
    """Advance one connection: True when served, False when failed, None meanwhile."""
    sock = conn.sock
    if not conn.sent and mask & selectors.EVENT_WRITE:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return False
        sock.send(REQUEST)
        conn.sent = True
        sel.modify(sock, selectors.EVENT_READ, conn)
        return None
    chunk = sock.recv(65536)
    if not chunk:
        return False
    conn.buf += chunk
    return True if response_complete(conn.buf) else None


def open_batch(port: int, count: int, timeout: float = 15.0) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections concurrently, one request each; (served sockets, failures)."""
    sel = selectors.DefaultSelector()
    held: list[socket.socket] = []
    failures = 0
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if sock.connect_ex((HOST, port)) not in (0, errno.EINPROGRESS):
            sock.close()
            failures += 1
            continue
        sel.register(sock, selectors.EVENT_WRITE, _Conn(sock))
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, mask in sel.select(timeout=1.0):
            try:
                outcome = _step(sel, key.data, mask)
            except OSError:
                outcome = False
            if outcome is None:
                continue
            sel.unregister(key.fileobj)
            if outcome:
                held.append(key.data.sock)
            else:
                key.data.sock.close()
                failures += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        failures += 1
    sel.close()
    return held, failures


def is_open(sock: socket.socket) -> bool:
    """True while the server has not closed this idle connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def fresh_request_ms(port: int, timeout: float = 5.0) -> float:
    """Milliseconds for connect + one request + full response on a new connection."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        buf = b""
        while not response_complete(buf):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the response was complete")
            buf += chunk
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def run_idle(port: int, rss: Callable[[], int], target: int = 10_000, batch: int = 250,
             samples: int = 200) -> IdleResult:
    """Hold ``target`` idle connections; measure RSS growth and fresh-request latency."""
    time.sleep(0.5)
    rss_before = rss()
    held: list[socket.socket] = []
    failures = 0
    started = time.monotonic()
    try:
        while len(held) < target and not failures:
            # A failed batch ends the opening: a server that cannot take `batch` more
            # connections in time (waitress's connection_limit, say) will not take 10k.
            got, failures = open_batch(port, min(batch, target - len(held)))
            held += got
        open_seconds = time.monotonic() - started
        time.sleep(1.0)
        rss_after = rss()
        timings: list[float] = []
        errors = 0
        for _ in range(samples):
            try:
                timings.append(fresh_request_ms(port, timeout=2.0))
            except OSError:
                errors += 1
                if errors >= MAX_SAMPLE_ERRORS:  # not accepting any more: stop early
                    break
        still_open = sum(is_open(s) for s in held)
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    return IdleResult(
        target=target, opened=len(held), still_open=still_open, open_errors=failures,
        open_seconds=open_seconds, rss_before_kib=rss_before, rss_after_kib=rss_after,
        samples=len(timings) + errors, sample_errors=errors,
        p50_ms=statistics.median(timings) if timings else 0.0, p99_ms=percentile(timings, 99),
    )
