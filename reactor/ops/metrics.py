"""Prometheus metrics of one process, served at /metrics on a listener of its own.

Strategy
--------
Request figures come from the access-log path: `ServerLog.request(record)` hands every
finished exchange to `Metrics.observe`, and `ServerLog.rejected` the requests the connection
layer refused with a status of its own (400, 408, 413, 414, 431) to `Metrics.observe_rejected`,
so the connection layer knows nothing of metrics and a request costs a few dict and list
updates. Everything else is read when scraped:
open and total connections from the HttpServer, pool depth from the loop's thread pool,
and `HttpServer.counters` -- plain `name -> int` that other layers bump (TLS handshakes,
WebSocket sessions, upload bytes) without importing anything of ours.

Workers: each worker process exposes its own figures, labelled `worker="N"`, on
`metrics.listen`'s port + N (worker 0 on the port itself; with port 0 each picks a free one
and logs it in `metrics-listening`). Nothing is aggregated by the master: Prometheus sums
across the targets (`sum without (worker) (...)`), and a worker that dies takes only its own
counters with it, which the `rate()` of a counter already tolerates.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor.app.types import Request, Response
from reactor.conn.shared import HttpSettings

if TYPE_CHECKING:
    from reactor.conn.server import HttpServer
    from reactor.conn.shared import AccessRecord
    from reactor.loop import EventLoop

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# The metrics listener's own fixed limits, not the main server's: a scrape is one small GET,
# and a few connections someone holds open must not refuse the scraper. At the limit the
# oldest connection with nothing to answer (silent, half a head, idle keep-alive) is closed.
LISTENER_MAX_CONNECTIONS = 16
LISTENER_LIMIT_HINT = ("the metrics listener is full: its oldest connections waiting for a"
                       " request are closed")


def listener_settings() -> HttpSettings:
    """Limits and timeouts of the metrics listener's connections."""
    return HttpSettings(max_request_line=4096, max_header_bytes=16384, max_header_fields=64,
                        max_body_bytes=4096, header_s=5.0, keepalive_s=75.0, body_s=5.0,
                        write_s=10.0)


# Latency histogram bounds in seconds (Prometheus client defaults, plus finer low buckets).
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
             10.0)
_BOUNDS_MS = tuple(bound * 1000.0 for bound in BUCKETS_S)
# Methods labelled as themselves; anything else is "OTHER" (a client must not be able to
# create label values, and so time series, at will).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                      "TRACE"})
# Counters other layers bump in HttpServer.counters, always exported (0 until bumped).
KNOWN_COUNTERS = {
    "tls_handshakes_total": "TLS handshakes completed.",
    "tls_handshake_failures_total": "TLS handshakes that failed.",
    "websocket_sessions_total": "WebSocket sessions opened.",
    "websocket_sessions_closed_total": "WebSocket sessions closed.",
    "upload_bytes_total": "Bytes of request bodies streamed to upload handlers.",
    "reloads_total": "Configuration reloads applied.",
    "reload_failures_total": "Configuration reloads refused.",
    "connections_reused_total": "Idle keep-alive connections closed at server.max_connections"
                                " to accept a new one.",
    "connections_shed_total": "Connections refused (503) at server.max_connections.",
}


class Metrics:
    """The request figures of one process, and the text exposition of everything."""

    __slots__ = ("_http", "_loop", "_other", "_ready", "_rows", "_unusual", "body_bytes_in",
                 "bytes_out", "latency_buckets", "latency_count", "latency_sum_ms", "worker")

    def __init__(self, worker: int = 0) -> None:
        self.worker = worker
        # Preallocated counters: method -> [_, 1xx, 2xx, 3xx, 4xx, 5xx], so a request costs
        # one dict lookup and a list increment. A status outside 100-599 is counted apart.
        self._rows: dict[str, list[int]] = {method: [0] * 6 for method in _METHODS}
        self._other = [0] * 6
        self._unusual: dict[tuple[str, int], int] = {}
        self.latency_buckets = [0] * (len(_BOUNDS_MS) + 1)  # the last one is +Inf
        self.latency_sum_ms = 0.0
        self.latency_count = 0
        self.body_bytes_in = 0
        self.bytes_out = 0
        self._http: HttpServer | None = None
        self._loop: EventLoop | None = None
        self._ready: Callable[[], bool] | None = None

    def attach(self, http: HttpServer, loop: EventLoop, ready: Callable[[], bool]) -> None:
        """Where scrape-time figures come from."""
        self._http, self._loop, self._ready = http, loop, ready

    def observe(self, record: AccessRecord) -> None:
        """One finished exchange (called from the access-log path, on the loop)."""
        method = record.request.method
        status_class = record.response.status // 100
        if 0 < status_class < 6:
            self._rows.get(method, self._other)[status_class] += 1
        else:
            key = (method if method in _METHODS else "OTHER", status_class)
            self._unusual[key] = self._unusual.get(key, 0) + 1
        duration_ms = record.duration_ms
        self.latency_buckets[bisect.bisect_left(_BOUNDS_MS, duration_ms)] += 1
        self.latency_sum_ms += duration_ms
        self.latency_count += 1
        self.body_bytes_in += record.bytes_in
        self.bytes_out += record.bytes_out

    def observe_rejected(self, fields: dict[str, Any]) -> None:
        """A `rejected` access event: a request the connection layer answered itself (400
        bad header, 408 header timeout, 413, 414, 431, 400 plain HTTP on a TLS port) counts
        like any answer, by status class and the method when the request line got that far.
        Not counted: 499 (the client left; nothing was answered), events without a status
        (write timeout), and the other kinds (`event_kind`: connections shed at the limit --
        no request was read, see connections_shed_total -- TLS handshakes, WebSocket
        sessions), which have counters of their own."""
        status = fields.get("status")
        if "event_kind" in fields or not isinstance(status, int) or status == 499:
            return
        method = fields.get("method")
        label = method if method in _METHODS else "OTHER"  # None (not known) too
        status_class = status // 100
        if 0 < status_class < 6:
            self._rows.get(label, self._other)[status_class] += 1
        else:
            self._unusual[(label, status_class)] = self._unusual.get((label, status_class), 0) + 1

    @property
    def requests(self) -> dict[tuple[str, int], int]:
        """Requests answered by (method label, status class), those seen only."""
        counts = dict(self._unusual)
        for method, row in (*self._rows.items(), ("OTHER", self._other)):
            for status_class, count in enumerate(row):
                if count:
                    counts[(method, status_class)] = count
        return counts

    # ---- exposition ---------------------------------------------------------------------
    def render(self) -> bytes:
        """Everything in the Prometheus text format (version 0.0.4)."""
        lines: list[str] = []
        worker = f'worker="{self.worker}"'

        def family(name: str, kind: str, doc: str, samples: list[tuple[str, Any]]) -> None:
            lines.append(f"# HELP reactor_{name} {doc}")
            lines.append(f"# TYPE reactor_{name} {kind}")
            for suffix_labels, value in samples:
                lines.append(f"reactor_{name}{suffix_labels} {value}")

        family("http_requests_total", "counter", "Requests answered, by method and status class.",
               [(f'{{{worker},method="{method}",status="{status}xx"}}', count)
                for (method, status), count in sorted(self.requests.items())])
        cumulative = 0
        samples: list[tuple[str, Any]] = []
        for bound, count in zip((*BUCKETS_S, "+Inf"), self.latency_buckets, strict=True):
            cumulative += count
            samples.append((f'_bucket{{{worker},le="{bound}"}}', cumulative))
        samples.append((f"_sum{{{worker}}}", repr(self.latency_sum_ms / 1000.0)))
        samples.append((f"_count{{{worker}}}", self.latency_count))
        family("http_request_duration_seconds", "histogram",
               "Time from a request's head to its response handed to the kernel.", samples)
        family("http_request_body_bytes_total", "counter",
               "Request body bytes received (uploads included; heads not counted).",
               [(f"{{{worker}}}", self.body_bytes_in)])
        family("http_response_bytes_total", "counter", "Response bytes sent, heads included.",
               [(f"{{{worker}}}", self.bytes_out)])
        self._render_live(lines, worker, family)
        lines.append("")
        return "\n".join(lines).encode("utf-8")

    def _render_live(self, lines: list[str], worker: str,
                     family: Callable[[str, str, str, list[tuple[str, Any]]], None]) -> None:
        http, loop = self._http, self._loop
        if http is None or loop is None:
            return
        label = f"{{{worker}}}"
        family("connections_open", "gauge", "Connections open now.",
               [(label, len(http.connections))])
        family("connections_total", "counter", "Connections accepted.",
               [(label, http.connection_count)])
        pool = loop.pool
        pending = pool.pending
        family("pool_threads", "gauge", "Threads in the worker pool.", [(label, pool.size)])
        family("pool_busy_threads", "gauge", "Pool threads running a job now.",
               [(label, min(pending, pool.size))])
        family("pool_queue_depth", "gauge", "Jobs waiting for a pool thread.",
               [(label, max(0, pending - pool.size))])
        counters = http.counters
        for name, doc in KNOWN_COUNTERS.items():
            family(name, "counter", doc, [(label, counters.get(name, 0))])
        for name in sorted(counters.keys() - KNOWN_COUNTERS.keys()):
            family(name, "counter", name.replace("_", " "), [(label, counters[name])])
        ready = self._ready() if self._ready is not None else False
        family("ready", "gauge", "1 while /readyz answers 200.", [(label, int(ready))])


class MetricsApp:
    """The metrics listener's handler: GET /metrics, 404 for anything else."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, request: Request) -> Response:
        if request.path != "/metrics":
            return Response(404, [(b"Content-Type", b"text/plain")], b"not found\n")
        if request.method not in ("GET", "HEAD"):
            return Response(405, [(b"Allow", b"GET, HEAD")], b"")
        return Response(200, [(b"Content-Type", CONTENT_TYPE)], self.metrics.render())


class QuietLog:
    """The metrics listener's RequestLog: scrapes are not access-logged; errors are."""

    def __init__(self, errors: Callable[[str, BaseException | None, dict[str, Any]], None]
                 ) -> None:
        self._errors = errors

    def request(self, record: AccessRecord) -> None:
        pass

    def rejected(self, fields: dict[str, Any]) -> None:
        pass

    def error(self, event: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        self._errors(event, exc, fields)
