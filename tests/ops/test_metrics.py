"""/metrics on its own listener, parsed with prometheus_client's text parser; the counters
match the requests made."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.ops.metrics import BUCKETS_S
from tests.conftest import RunningServer, fetch, on_loop, start_server, wait_until
from tests.ops.serverproc import ServeProcess, base_config, write_config


def scrape(host: str, port: int, path: str = "/metrics",
           timeout: float = 5.0) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return (response.status, response.getheader("content-type") or "",
                response.read().decode())
    finally:
        connection.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} for every sample of the exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def metrics_of(running: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    listener = running.server.metrics_listener
    assert listener is not None
    host, port = listener.address[:2]
    status, content_type, text = scrape(host, port)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    return samples(text)


def w(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"worker": "0", **labels}.items()))


@pytest.fixture
def running(tmp_path: Path, files_dir: Path):  # type: ignore[no-untyped-def]
    running = start_server(tmp_path, metrics={"listen": "127.0.0.1:0"},
                           files={"directory": files_dir})
    yield running
    running.stop()


def test_counters_match_the_requests_made(running: RunningServer) -> None:
    before = metrics_of(running)
    assert before[("reactor_ready", w())] == 1
    assert not [key for key in before if key[0] == "reactor_http_requests_total"]
    for _ in range(3):
        assert fetch(running, "GET", "/nothing")[0] == 404
    assert fetch(running, "POST", "/files/up.txt", body=b"x" * 1000)[0] // 100 == 2
    fetch(running, "HEAD", "/nothing")
    fetch(running, "BREW", "/nothing")  # an unknown method is one label value: OTHER
    fetch(running, "GET", "/readyz")  # health checks count too (they are requests)

    def counted() -> bool:
        found = metrics_of(running)
        return found.get(("reactor_http_request_duration_seconds_count", w())) == 7
    assert wait_until(counted)
    found = metrics_of(running)
    assert found[("reactor_http_requests_total", w(method="GET", status="4xx"))] == 3
    assert found[("reactor_http_requests_total", w(method="GET", status="2xx"))] == 1
    assert found[("reactor_http_requests_total", w(method="POST", status="2xx"))] == 1
    assert found[("reactor_http_requests_total", w(method="HEAD", status="4xx"))] == 1
    assert sum(value for (name, labels), value in found.items()
               if name == "reactor_http_requests_total" and ("method", "OTHER") in labels) == 1
    assert found[("reactor_http_request_body_bytes_total", w())] == 1000
    assert found[("reactor_http_response_bytes_total", w())] > 0
    assert found[("reactor_http_request_duration_seconds_bucket", w(le="+Inf"))] == 7
    buckets = [found[("reactor_http_request_duration_seconds_bucket", w(le=str(b)))]
               for b in BUCKETS_S]
    assert buckets == sorted(buckets) and buckets[-1] <= 7
    assert found[("reactor_http_request_duration_seconds_sum", w())] > 0
    assert found[("reactor_connections_total", w())] == 7
    assert found[("reactor_pool_threads", w())] == running.server.config.server.pool_threads
    assert found[("reactor_pool_queue_depth", w())] == 0
    assert found[("reactor_upload_bytes_total", w())] == 1000  # /files streams its body
    for name in ("tls_handshakes", "tls_handshake_failures", "websocket_sessions",
                 "reloads"):
        assert found[(f"reactor_{name}_total", w())] == 0


def test_open_connections_and_bumped_counters(running: RunningServer) -> None:
    with socket.create_connection((running.host, running.port)) as idle:
        idle.sendall(b"")
        assert wait_until(lambda: metrics_of(running)[("reactor_connections_open", w())] == 1)
        counters = running.server.http.counters
        running.call(counters.__setitem__, "tls_handshakes_total", 5)
        running.call(counters.__setitem__, "h2_nonsense_total", 2)
        assert wait_until(lambda: metrics_of(running).get(
            ("reactor_h2_nonsense_total", w())) == 2)
        assert metrics_of(running)[("reactor_tls_handshakes_total", w())] == 5


def test_metrics_listener_only_serves_metrics(running: RunningServer) -> None:
    listener = running.server.metrics_listener
    assert listener is not None
    host, port = listener.address[:2]
    assert scrape(host, port, "/")[0] == 404
    assert scrape(host, port, "/files/x")[0] == 404
    assert fetch(running, "GET", "/metrics")[0] == 404  # and the app listener has none


@pytest.mark.expect_log({"event": "connection-limit-reached", "max_connections": 16,
                         "refused_503": 0})
def test_connections_held_open_do_not_refuse_a_scrape(running: RunningServer) -> None:
    """Silent connections (and one sending half a head) beyond the main server's default
    limit of 64: the metrics listener closes its oldest waiting ones, the scrape answers."""
    listener = running.server.metrics_listener
    assert listener is not None
    host, port = listener.address[:2]
    held = [socket.create_connection((host, port)) for _ in range(70)]
    try:
        held[1].sendall(b"GET /metr")
        status, _, text = scrape(host, port, timeout=1.0)
        assert status == 200 and "reactor_ready" in text
        for oldest in held[:2]:  # closed without an answer, as a header timeout would
            oldest.settimeout(1.0)
            with contextlib.suppress(ConnectionResetError):  # half a head may be unread
                assert oldest.recv(100) == b""
        assert on_loop(running, lambda: len(running.server.metrics_http.connections)) <= 16
    finally:
        for sock in held:
            sock.close()


def test_draining_shows_not_ready(tmp_path: Path) -> None:
    running = start_server(tmp_path, metrics={"listen": "127.0.0.1:0"},
                           timeouts={"drain_s": 30.0})
    try:
        running.call(running.server.stop)
        assert wait_until(lambda: metrics_of(running)[("reactor_ready", w())] == 0)
    finally:
        running.call(running.server.stop)
        running.stop()


def test_off_by_default(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        assert running.server.metrics_listener is None
        assert fetch(running, "GET", "/")[0] == 200
        # With no /metrics listener nobody can read counts: requests are not counted.
        assert running.server.log.observer is None
        assert on_loop(running, lambda: running.server.metrics.latency_count) == 0
    finally:
        running.stop()


def test_requests_are_counted_when_metrics_are_served(running: RunningServer) -> None:
    assert running.server.log.observer is not None
    assert fetch(running, "GET", "/")[0] == 200
    wait_until(lambda: on_loop(running, lambda: running.server.metrics.latency_count) == 1)


def two_free_ports() -> int:
    """A port p such that p and p + 1 were both free a moment ago."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two adjacent free ports")


def test_each_worker_exposes_its_own_on_port_plus_worker(tmp_path: Path) -> None:
    base = two_free_ports()
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, server={"workers": 2}, metrics={"listen": f"127.0.0.1:{base}"}))
    proc = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        lines = [proc.wait_event("metrics-listening", count) for count in (1, 2)]
        assert sorted((x["worker"], x["port"]) for x in lines) == [(0, base), (1, base + 1)]
        for worker in (0, 1):
            status, _, text = scrape("127.0.0.1", base + worker)
            assert status == 200
            found = samples(text)
            assert found[("reactor_ready", (("worker", str(worker)),))] == 1
        proc.send_signal(signal.SIGTERM)  # the master stops its workers (stop() kills it only)
        assert proc.wait() == 0
    finally:
        proc.stop()


def test_a_taken_metrics_port_is_one_line_at_startup(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "reactor.toml", base_config(
            tmp_path, metrics={"listen": f"127.0.0.1:{port}"}))
        proc = ServeProcess(["--config", str(config)], cwd=tmp_path)
        try:
            assert proc.wait() == 1
            texts = [line.get("text", "") for line in proc.lines]
            assert texts == [f"reactor: cannot listen on 127.0.0.1:{port}: Address already in use"]
        finally:
            proc.stop()


def test_request_counters_by_method_and_status_class_include_unusual_ones() -> None:
    """Preallocated rows count the common classes; methods outside the label set are OTHER
    and a status outside 100-599 still gets its own series."""
    from reactor.app.types import Headers, Request, Response
    from reactor.conn.shared import AccessRecord
    from reactor.ops.metrics import Metrics

    metrics = Metrics(worker=3)
    for method, status in [("GET", 200), ("GET", 204), ("HEAD", 304), ("BREW", 418),
                           ("POST", 503), ("GET", 999), ("BREW", 42)]:
        request = Request(method, "/", "", "1.1", Headers([]))
        record = AccessRecord(request, Response(status), 1, 10, 2, None)
        record.duration_ms = 0.7
        metrics.observe(record)
    assert metrics.requests == {("GET", 2): 2, ("HEAD", 3): 1, ("OTHER", 4): 1,
                                ("POST", 5): 1, ("GET", 9): 1, ("OTHER", 0): 1}
    found = samples(metrics.render().decode())
    assert found[("reactor_http_requests_total",
                  w(worker="3", method="GET", status="2xx"))] == 2
    assert found[("reactor_http_requests_total",
                  w(worker="3", method="GET", status="9xx"))] == 1
    assert found[("reactor_http_request_duration_seconds_count", w(worker="3"))] == 7
    assert found[("reactor_http_response_bytes_total", w(worker="3"))] == 70


def test_refusals_of_the_connection_layer_are_counted(tmp_path: Path) -> None:
    """400/408/413/414 answered by the connection layer itself (never reaching the app) count
    in reactor_http_requests_total like other answers; a client that leaves mid-request (499,
    nothing answered) does not."""
    from tests.conftest import RawClient, wait_for_log

    running = start_server(tmp_path, metrics={"listen": "127.0.0.1:0"},
                           limits={"max_body_bytes": 10, "max_request_line": 200},
                           timeouts={"header_s": 0.3})
    try:
        refusals = {
            b"GET /a HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n": 400,
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n": 400,
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n": 413,
            b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n": 414,
            b"PUT /slow HTTP/1.1\r\nHost: x\r\n": 408,  # the header never ends
        }
        for raw, expected in refusals.items():
            with RawClient.to(running) as client:
                client.send(raw)
                assert client.read_response().status == expected
        with RawClient.to(running) as client:  # leaves mid-header: 499 in the access log
            client.send(b"GET /gone HTTP/1.1\r\nHost: x\r\n")

        def requests() -> dict[tuple[tuple[str, str], ...], float]:
            return {labels: value for (name, labels), value in metrics_of(running).items()
                    if name == "reactor_http_requests_total"}
        wait_for_log(running.access_log, lambda line: line.get("status") == 499)
        assert wait_until(lambda: sum(requests().values()) >= 5)
        # The method where the request line arrived (a refused header block's too); the
        # 414's line was never read whole: OTHER, like a method outside the list.
        assert requests() == {w(method="GET", status="4xx"): 2,
                              w(method="OTHER", status="4xx"): 1,
                              w(method="POST", status="4xx"): 1,
                              w(method="PUT", status="4xx"): 1}
        assert metrics_of(running)[("reactor_connections_shed_total", w())] == 0
    finally:
        running.stop()


def test_tls_websocket_and_upload_counters_count_what_happened(tmp_path: Path,
                                                                files_dir: Path) -> None:
    """tls_handshakes/_failures, websocket_sessions/_closed and upload_bytes come from the
    connection layer: real handshakes, sessions and uploads move them (they stayed 0)."""
    import ssl

    from tests.conn.tlskit import Certs, tls_client, tls_server
    from tests.wsclient import WsClient

    certs = Certs(tmp_path / "certs")
    running = tls_server(tmp_path, certs, metrics={"listen": "127.0.0.1:0"},
                         files={"directory": files_dir})
    try:
        with tls_client(running, certs.client_context()) as client:  # one handshake, 2 requests
            for _ in range(2):
                client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert client.read_response().status == 200
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
            tls_client(running, ssl.create_default_context())
        assert fetch(running, "PUT", "/files/up.bin", body=b"u" * 3000)[0] == 201
        ws = WsClient(running.host, running.port, "/ws/echo")
        ws.send("hi")
        ws.recv()
        assert wait_until(lambda: metrics_of(running)[
            ("reactor_websocket_sessions_total", w())] == 1)
        assert metrics_of(running)[("reactor_websocket_sessions_closed_total", w())] == 0
        ws.close()
        assert wait_until(lambda: metrics_of(running)[
            ("reactor_websocket_sessions_closed_total", w())] == 1)
        found = metrics_of(running)
        assert found[("reactor_tls_handshakes_total", w())] == 1
        assert found[("reactor_tls_handshake_failures_total", w())] == 1
        assert found[("reactor_upload_bytes_total", w())] == 3000
        assert found[("reactor_websocket_sessions_total", w())] == 1
    finally:
        running.stop()
