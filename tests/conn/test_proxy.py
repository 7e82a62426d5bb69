"""PROXY-protocol listeners on real sockets: trusted/untrusted peers, v1/v2, timeouts, hand-off,
and the header in front of a real TLS handshake on a TLS listener."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.app.proxy import TrustedNetworks
from reactor.app.types import Request, Response
from reactor.conn.listener import Listener, ListenerOptions
from reactor.conn.proxy import ProxyHeaderProtocol
from reactor.conn.server import HttpServer
from reactor.conn.transport import SocketTransport
from reactor.proto.proxyproto import V2_SIGNATURE
from tests.conftest import (
    RawClient,
    RunningServer,
    on_loop,
    read_log,
    request_bytes,
    start_server,
    wait_for_log,
    wait_until,
)
from tests.conn.conftest import LoopThread, RecordingLog
from tests.conn.tlskit import Certs, bio_exchange, https, tls_port, tls_server

V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"


def v2_tcp4(src: str, sport: int, tlvs: bytes = b"", command: int = 1) -> bytes:
    address = (socket.inet_aton(src) + socket.inet_aton("10.0.0.1")
               + struct.pack("!HH", sport, 443))
    payload = address + tlvs
    return (V2_SIGNATURE + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(payload))
            + payload)


def who(request: Request) -> Response:
    text = f"{request.client_addr} {request.remote_addr} {request.scheme}"
    return Response(200, [(b"Content-Type", b"text/plain")], text.encode())


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path, proxy={"protocol": True},
                           timeouts={"proxy_header_s": 0.5})
    running.server.app.router.get("/who", who)
    yield running
    running.stop()


def closed_without_answer(client: RawClient) -> bool:
    """The server closed sending nothing (a reset counts: it never read what we sent)."""
    try:
        return client.read_to_eof() == b""
    except ConnectionResetError:
        return not client.buffer


def rejected(running: RunningServer, reason: str) -> dict:
    return wait_for_log(running.access_log, lambda line: line.get("event") == "proxy_rejected"
                        and line.get("reason") == reason)[0]


def test_v1_header_sets_the_client_address(proxied: RunningServer) -> None:
    with RawClient.to(proxied) as client:
        client.send(V1 + request_bytes("GET", "/who"))
        response = client.read_response()
        assert response.body == b"203.0.113.7 127.0.0.1 http"
        client.send(request_bytes("GET", "/who"))  # keep-alive: the same connection facts
        assert client.read_response().body == b"203.0.113.7 127.0.0.1 http"
    line = wait_for_log(proxied.access_log, lambda x: x.get("event") == "request")[0]
    assert line["client_addr"] == "203.0.113.7"
    assert line["peer_addr"] == line["remote_addr"] == "127.0.0.1"


def test_v1_tcp6_with_a_v4_mapped_client_logs_it_as_ipv4(proxied: RunningServer) -> None:
    # What HAProxy's send-proxy says of an IPv4 client on a dual-stack bind (":::80 v4v6");
    # send-proxy-v2 from the same HAProxy gives "203.0.113.7": one client, one address.
    header = b"PROXY TCP6 ::ffff:203.0.113.7 ::ffff:10.0.0.1 51234 443\r\n"
    with RawClient.to(proxied) as client:
        client.send(header + request_bytes("GET", "/who"))
        assert client.read_response().body == b"203.0.113.7 127.0.0.1 http"
    line = wait_for_log(proxied.access_log, lambda x: x.get("event") == "request")[0]
    assert line["client_addr"] == "203.0.113.7"


def test_v2_header_split_byte_by_byte_then_request(proxied: RunningServer) -> None:
    data = v2_tcp4("198.51.100.9", 4000) + request_bytes("GET", "/who")
    with RawClient.to(proxied) as client:
        for byte in data[:40]:
            client.send(bytes([byte]))
        client.send(data[40:])
        assert client.read_response().body == b"198.51.100.9 127.0.0.1 http"


def test_v2_ssl_tlv_means_https(proxied: RunningServer) -> None:
    ssl = bytes([0x20]) + struct.pack("!H", 5) + b"\x01" + bytes(4)
    with RawClient.to(proxied) as client:
        client.send(v2_tcp4("198.51.100.9", 4000, ssl) + request_bytes("GET", "/who"))
        assert client.read_response().body == b"198.51.100.9 127.0.0.1 https"


def test_v2_local_command_keeps_the_peer(proxied: RunningServer) -> None:
    with RawClient.to(proxied) as client:
        client.send(v2_tcp4("198.51.100.9", 4000, command=0) + request_bytes("GET", "/who"))
        assert client.read_response().body == b"127.0.0.1 127.0.0.1 http"


@pytest.mark.parametrize(("data", "reason"), [
    (request_bytes("GET", "/who"), "proxy-header-missing"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 99999\r\nGET / HTTP/1.1\r\n\r\n",
     "proxy-v1-bad-port"),
    (b"PROXY TCP4 " + b"1" * 120, "proxy-v1-too-long"),
    (V2_SIGNATURE + b"\x21\x11\xff\xff", "proxy-v2-too-long"),
])
def test_bad_header_closes_without_an_answer(proxied: RunningServer, data: bytes,
                                             reason: str) -> None:
    with RawClient.to(proxied) as client:
        client.send(data)
        assert client.read_to_eof() == b""
    line = rejected(proxied, reason)
    assert line["remote_addr"] == "127.0.0.1"


def test_header_deadline(proxied: RunningServer) -> None:
    with RawClient.to(proxied) as client:
        client.send(V1[:10])  # and then nothing
        assert client.read_to_eof() == b""
    rejected(proxied, "proxy-header-timeout")


def test_eof_inside_the_header(proxied: RunningServer) -> None:
    with RawClient.to(proxied) as client:
        client.send(V1[:10])
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_to_eof() == b""
    rejected(proxied, "proxy-header-eof")


def test_untrusted_peer_is_refused_before_reading(tmp_path: Path) -> None:
    running = start_server(tmp_path, proxy={"protocol": True, "trusted": ["10.0.0.0/8"]})
    try:
        with RawClient.to(running) as client:
            client.send(V1 + request_bytes("GET", "/"))
            assert closed_without_answer(client)
        rejected(running, "proxy-untrusted-peer")
        assert not [x for x in (wait_for_log(running.access_log, lambda x: True))
                    if x.get("event") == "request"]
    finally:
        running.stop()


def test_a_plain_listener_treats_a_proxy_line_as_a_bad_request(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        with RawClient.to(running) as client:
            client.send(V1 + request_bytes("GET", "/"))
            assert client.read_response().status == 400
    finally:
        running.stop()


def test_graceful_stop_closes_a_connection_waiting_for_its_header(tmp_path: Path) -> None:
    running = start_server(tmp_path, proxy={"protocol": True})
    with RawClient.to(running) as client:
        client.send(V1[:5])
        time.sleep(0.05)  # let the server read it; the stop below must not wait 5 s for more
        running.stop()
        assert not running.thread.is_alive()
        assert client.read_to_eof() == b""


@pytest.mark.expect_log("connection-limit-reached")
def test_at_the_limit_a_silent_connection_waiting_for_its_header_makes_room(
        tmp_path: Path) -> None:
    """Behind a proxy, a connection that never sent its PROXY header was never reusable at
    `max_connections`: silent ones held their slots for proxy_header_s while every newcomer
    got a 503 (a plain listener closes its oldest silent connection; nginx too). One with
    part of its header in is not closed: the newcomer is refused instead."""
    running = start_server(tmp_path, proxy={"protocol": True},
                           server={"max_connections": 1})
    try:
        with RawClient.to(running) as silent:
            assert wait_until(lambda: on_loop(running, lambda: len(
                running.server.http.connections)) == 1)
            with RawClient.to(running) as client:
                client.send(V1 + request_bytes("GET", "/echo/in"))
                assert client.read_response().body == b"in"
            assert closed_without_answer(silent)
        with RawClient.to(running) as started:
            started.send(V1[:5])
            assert wait_until(lambda: on_loop(running, lambda: [
                t for t in running.server.http.connections if not t.protocol.reusable]))
            with RawClient.to(running) as refused:
                assert refused.read_response().status == 503
            started.send(V1[5:] + request_bytes("GET", "/echo/kept"))
            assert started.read_response().body == b"kept"
    finally:
        running.stop()


# ---- the hand-off seam, as a TLS step would use it ------------------------------------------

def test_next_step_gets_the_transport_and_exactly_the_bytes_after_the_header() -> None:
    """A listener composes "PROXY header, then X": X receives the transport with the
    connection facts set, and the bytes that followed the header (a TLS ClientHello here)."""
    loop = LoopThread()
    log = RecordingLog()
    handed: list[tuple[dict, bytes]] = []
    got = threading.Event()

    def then(transport: SocketTransport, conn_id: int, trailing: bytes) -> None:
        handed.append((dict(transport.extra), trailing))
        got.set()
        transport.close()

    listen = socket.create_server(("127.0.0.1", 0))
    listen.setblocking(False)
    try:
        server = HttpServer(loop.loop, who, log)

        def accept(sock: socket.socket, addr: tuple) -> None:
            server.accept(sock, addr, start=lambda transport, conn_id: transport.start(
                ProxyHeaderProtocol(loop.loop, log, conn_id, then=then,
                                    trusted=TrustedNetworks(["127.0.0.0/8"]))))

        listener = Listener(loop.loop, listen, accept, ListenerOptions("test",
                                                                       proxy_protocol=True))
        loop.run(listener.start)
        hello = b"\x16\x03\x01\x00\x05hello"
        with socket.create_connection(listen.getsockname()[:2], timeout=5) as client:
            client.sendall(V1 + hello)
            assert got.wait(5)
        extra, trailing = handed[0]
        assert trailing == hello
        assert extra["client_addr"] == "203.0.113.7" and extra["client_port"] == 51234
        assert extra["proxy_source"] == ("203.0.113.7", 51234)
        loop.run(listener.close)
    finally:
        listen.close()
        loop.close()
    assert not log.rejected_lines


def test_acceptor_picks_the_proxy_step_per_listener() -> None:
    loop = LoopThread()
    try:
        server = HttpServer(loop.loop, who, RecordingLog())
        assert server.acceptor(ListenerOptions("a")) == server.accept
        assert server.acceptor(ListenerOptions("b", proxy_protocol=True)) == \
            server.accept_proxied
    finally:
        loop.close()


# ---- the header in front of a TLS handshake ---------------------------------------------------

V2_LOCAL = v2_tcp4("198.51.100.9", 4000, command=0)


@pytest.fixture
def proxied_tls(tmp_path: Path, certs: Certs) -> Iterator[RunningServer]:
    running = tls_server(tmp_path, certs, proxy={"protocol": True},
                         timeouts={"proxy_header_s": 0.5, "tls_handshake_s": 1.0})
    running.server.app.router.get("/who", who)
    yield running
    running.stop()


def who_over_tls(running: RunningServer, certs: Certs, **how: Any) -> bytes:
    """The /who body of one request sent through `bio_exchange(..., **how)`."""
    answer = bio_exchange(tls_port(running), certs.client_context(),
                          request_bytes("GET", "/who", {"Connection": "close"}), **how)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    return body


def request_lines(running: RunningServer, count: int = 1) -> list[dict]:
    return wait_for_log(running.access_log, lambda x: x.get("event") == "request", count)


@pytest.mark.parametrize(("header", "client"), [
    (V1, "203.0.113.7"), (v2_tcp4("198.51.100.9", 4000), "198.51.100.9"),
    (V2_LOCAL, "127.0.0.1")])  # LOCAL (a health check): the peer itself
def test_a_header_before_a_tls_handshake(proxied_tls: RunningServer, certs: Certs,
                                         header: bytes, client: str) -> None:
    with RawClient("127.0.0.1", tls_port(proxied_tls)) as raw:
        raw.send(header)
        raw.sock = certs.client_context().wrap_socket(raw.sock, server_hostname="localhost")
        for _ in range(2):  # keep-alive: the same connection facts
            raw.send(request_bytes("GET", "/who"))
            assert raw.read_response().body == f"{client} 127.0.0.1 https".encode()
    for line in request_lines(proxied_tls, 2):
        assert line["client_addr"] == client and line["peer_addr"] == "127.0.0.1"
        assert line["scheme"] == "https" and line["tls_version"].startswith("TLS")


@pytest.mark.parametrize("header", [V1, v2_tcp4("198.51.100.9", 4000)])
def test_header_and_client_hello_in_one_segment(proxied_tls: RunningServer, certs: Certs,
                                                header: bytes) -> None:
    """The peek sees both at once and must take only the header off the socket."""
    body = who_over_tls(proxied_tls, certs, preamble=header)
    assert body.endswith(b" 127.0.0.1 https") and not body.startswith(b"127.0.0.1 ")


def test_header_split_byte_by_byte_then_a_trickled_handshake(proxied_tls: RunningServer,
                                                             certs: Certs) -> None:
    header = v2_tcp4("198.51.100.9", 4000)
    body = who_over_tls(proxied_tls, certs, preamble=header, preamble_pieces=len(header),
                        preamble_pause_s=0.002, trickle_s=0.0005)
    assert body == b"198.51.100.9 127.0.0.1 https"


def test_a_partial_header_waits_without_spinning(proxied_tls: RunningServer,
                                                 certs: Certs) -> None:
    """The bytes of a partial header are taken off the socket: peeked and left there they
    would keep it readable and the loop would spin until the rest came."""
    with RawClient("127.0.0.1", tls_port(proxied_tls)) as raw:
        raw.send(V1[:20])
        cpu = time.process_time()
        time.sleep(0.3)
        cpu = time.process_time() - cpu
        raw.send(V1[20:])
        raw.sock = certs.client_context().wrap_socket(raw.sock, server_hostname="localhost")
        raw.send(request_bytes("GET", "/who"))
        assert raw.read_response().body == b"203.0.113.7 127.0.0.1 https"
    assert cpu < 0.15, f"{cpu:.2f} s of CPU while waiting for the rest of the header"


def test_a_tls_client_without_a_header_is_closed(proxied_tls: RunningServer,
                                                 certs: Certs) -> None:
    with pytest.raises(OSError):  # the server closes on the ClientHello, answering nothing
        https(proxied_tls, certs.client_context(), "GET", "/who")
    line = rejected(proxied_tls, "proxy-header-missing")
    assert line["remote_addr"] == "127.0.0.1"
    assert not [x for x in read_log(proxied_tls.access_log) if x.get("event") == "request"]


def test_an_untrusted_peer_on_the_tls_port_is_closed(tmp_path: Path, certs: Certs) -> None:
    running = tls_server(tmp_path, certs, proxy={"protocol": True, "trusted": ["10.0.0.0/8"]})
    try:
        with RawClient("127.0.0.1", tls_port(running)) as raw:
            raw.send(V1)
            assert closed_without_answer(raw)
        rejected(running, "proxy-untrusted-peer")
    finally:
        running.stop()


def test_a_late_header_on_the_tls_port_is_closed_at_its_deadline(
        proxied_tls: RunningServer) -> None:
    with RawClient("127.0.0.1", tls_port(proxied_tls)) as raw:
        started = time.monotonic()
        raw.send(V1[:10])  # and then nothing
        assert raw.read_to_eof() == b""
        waited = time.monotonic() - started
    rejected(proxied_tls, "proxy-header-timeout")
    assert 0.4 < waited < 0.9  # proxy_header_s (0.5), not tls_handshake_s (1.0)


def test_the_handshake_timeout_starts_after_the_header(proxied_tls: RunningServer) -> None:
    with RawClient("127.0.0.1", tls_port(proxied_tls)) as raw:
        started = time.monotonic()
        time.sleep(0.4)
        raw.send(V1)  # within proxy_header_s; then no ClientHello
        assert raw.read_to_eof() == b""
        waited = time.monotonic() - started
    line = wait_for_log(proxied_tls.access_log,
                        lambda x: x.get("event") == "tls-handshake-failed")[0]
    assert line["reason"] == "handshake-timeout"
    assert line["client_addr"] == "203.0.113.7" and line["remote_addr"] == "127.0.0.1"
    assert waited > 1.3  # 0.4 + tls_handshake_s (1.0)


def test_plain_http_after_a_header_on_the_tls_port_gets_the_https_hint(
        proxied_tls: RunningServer) -> None:
    port = tls_port(proxied_tls)
    with RawClient("127.0.0.1", port) as raw:
        raw.send(V1 + request_bytes("GET", "/who", {"Host": f"localhost:{port}"}))
        response = raw.read_response()
        assert response.status == 400
        assert f"https://localhost:{port}/who".encode() in response.body
    line = wait_for_log(proxied_tls.access_log,
                        lambda x: x.get("reason") == "plain-http-to-tls-port")[0]
    assert line["client_addr"] == "203.0.113.7" and line["status"] == 400


def test_graceful_stop_closes_a_tls_connection_waiting_for_its_header(tmp_path: Path,
                                                                      certs: Certs) -> None:
    running = tls_server(tmp_path, certs, proxy={"protocol": True})
    with RawClient("127.0.0.1", tls_port(running)) as raw:
        raw.send(V1[:5])
        time.sleep(0.05)  # let the server take it; the stop must not wait 5 s for more
        running.stop()
        assert not running.thread.is_alive()
        assert raw.read_to_eof() == b""


def test_a_header_step_begun_before_a_log_reload_reports_to_the_new_log() -> None:
    """A reload that changes [log] closes the old one: a connection still in its PROXY
    header step when it happens must report its refusal to the log now in force."""
    loop = LoopThread()
    old, new = RecordingLog(), RecordingLog()
    listen = socket.create_server(("127.0.0.1", 0))
    listen.setblocking(False)
    try:
        server = HttpServer(loop.loop, who, old)
        server.trusted_proxies = TrustedNetworks(["127.0.0.0/8"])
        listener = Listener(loop.loop, listen, server.acceptor(
            ListenerOptions("test", proxy_protocol=True)), ListenerOptions("test"))
        loop.run(listener.start)
        with socket.create_connection(listen.getsockname()[:2], timeout=5) as client:
            client.sendall(b"PROXY TCP4 203.0.113.7 ")
            deadline = time.monotonic() + 5
            while not loop.run(lambda: len(server.connections)):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            loop.run(setattr, server, "log", new)  # what a reload does
            client.shutdown(socket.SHUT_WR)
            assert client.recv(100) == b""
        loop.run(listener.close)
    finally:
        listen.close()
        loop.close()
    assert [line["reason"] for line in new.rejected_lines] == ["proxy-header-eof"]
    assert not old.rejected_lines
