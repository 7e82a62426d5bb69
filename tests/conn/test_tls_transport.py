"""The TLS transport on a socketpair: a handshake whose first flight does not fit in the
socket buffer (SSLWantWriteError: the loop waits for writability)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from reactor.app.application import build_app
from reactor.conn.listener import ListenerOptions
from reactor.conn.server import HttpServer
from reactor.conn.tls import TlsContexts, TlsTransport
from tests.conn.conftest import TIMEOUT_S, LoopThread, RecordingLog, recv_until
from tests.conn.tlskit import Certs


def test_a_first_flight_larger_than_the_socket_buffer_waits_for_writability(
        tmp_path: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch) -> None:
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("server", "localhost")
    # A long chain (the CA repeated) makes the server's flight ~40 KB.
    cert.write_bytes(cert.read_bytes() + certs.ca_file.read_bytes() * 60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server_side, client_side = socket.socketpair()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server_side.setblocking(False)
    log = RecordingLog()
    server = HttpServer(loop_thread.loop, build_app(directory=None), log)
    tls = TlsContexts(context)
    writes: list[object] = []
    add_writer = loop_thread.loop.add_writer

    def spy(fd: object, callback: object) -> None:
        writes.append(callback)
        add_writer(fd, callback)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_thread.loop, "add_writer", spy)
    loop_thread.run(server.acceptor(ListenerOptions("pair", tls=tls)), server_side,
                    ("127.0.0.1", 1))
    client_side.settimeout(TIMEOUT_S)
    client = certs.client_context().wrap_socket(client_side, server_hostname="localhost")
    try:
        client.sendall(b"GET /echo/flight HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert recv_until(client, b"flight").endswith(b"\r\n\r\nflight")
    finally:
        client.close()
    # the handshake waited for writability at least once (SSLWantWriteError)
    assert any(getattr(cb, "__func__", None) is TlsTransport._handshake_step
               for cb in writes), writes
    assert not log.rejected_lines
