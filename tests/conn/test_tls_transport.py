"""The TLS transport on a socketpair: a handshake whose first flight does not fit in the
socket buffer (SSLWantWriteError: the loop waits for writability); a file answer over TLS
is corked (its records follow the head only after a pool read)."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reactor.app.application import build_app
from reactor.app.types import FileTruncated
from reactor.conn.listener import ListenerOptions
from reactor.conn.server import HttpServer
from reactor.conn.tls import TlsContexts, TlsTransport
from tests.conn.conftest import TIMEOUT_S, LoopThread, RecordingLog
from tests.conn.test_transport import Recorder, corked, tcp_pair
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
    # The client (TLS over memory buffers) sends its hello and reads nothing until the
    # server has had to wait for writability: a client reading on the other core as fast as
    # the server writes could otherwise take the whole flight without the buffer filling.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")

    def flush() -> None:
        pending = outgoing.read()
        if pending:
            client_side.sendall(pending)

    def step(call: Callable[[], object]) -> object:
        """`call()` over the socket: flush what it wrote, feed it what arrives."""
        while True:
            try:
                result = call()
            except ssl.SSLWantReadError:
                flush()
                data = client_side.recv(65536)
                assert data, "the server closed before the exchange ended"
                incoming.write(data)
                continue
            flush()
            return result

    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    flush()  # the ClientHello
    deadline = time.monotonic() + TIMEOUT_S
    while not any(getattr(cb, "__func__", None) is TlsTransport._handshake_step
                  for cb in list(writes)):
        assert time.monotonic() < deadline, f"the handshake never waited to write: {writes}"
        time.sleep(0.01)
    try:
        step(client.do_handshake)
        step(lambda: client.write(
            b"GET /echo/flight HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        answer = b""
        while not answer.endswith(b"\r\n\r\nflight"):
            answer += step(lambda: client.read(65536))  # type: ignore[operator]
    finally:
        client_side.close()
    assert not log.rejected_lines


def _tls_over(tmp_path: Path, loop_thread: LoopThread, server_side: socket.socket,
              client_side: socket.socket, protocol: Recorder
              ) -> tuple[TlsTransport, ssl.SSLSocket]:
    """A TlsTransport over `server_side` (a certificate for localhost made in `tmp_path`)
    started with `protocol`, and the client's end, wrapped: the handshake runs as the
    client calls wrap_socket."""
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("server", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def make() -> TlsTransport:
        made = TlsTransport(loop_thread.loop, server_side, ("127.0.0.1", 1),
                            TlsContexts(context))
        made.start(protocol)
        return made
    transport: TlsTransport = loop_thread.run(make)
    client = certs.client_context().wrap_socket(client_side, server_hostname="localhost")
    return transport, client


def test_a_file_answer_over_tls_is_corked_until_it_is_all_sent(
        tmp_path: Path, loop_thread: LoopThread) -> None:
    # Plain TCP sends the head with MSG_MORE right before sendfile; TLS reads the file in the
    # pool, so the head's record would leave alone: the socket is corked instead.
    server_side, client_side = tcp_pair(sndbuf=64 * 1024)
    probe = server_side.dup()  # the same TCP socket, still ours once TLS wraps server_side
    path = tmp_path / "big.bin"
    body = bytes(range(256)) * 16 * 1024  # 4 MiB: more than the socket takes at once
    path.write_bytes(body)
    protocol = Recorder()
    transport, client = _tls_over(tmp_path, loop_thread, server_side, client_side, protocol)
    try:
        protocol.wait_for("made")  # the handshake is done
        loop_thread.run(lambda: (transport.write(b"head\r\n"),
                                 transport.write_file(path.open("rb"), 0, len(body))))
        protocol.wait_for("blocked")  # the client reads nothing yet: the file is pending
        assert corked(loop_thread, probe) == 1
        received = bytearray()
        while len(received) < 6 + len(body):
            chunk = client.recv(1 << 20)
            assert chunk, f"closed after {len(received)} bytes"
            received += chunk
        assert bytes(received) == b"head\r\n" + body
        protocol.wait_for("resume")
        deadline = time.monotonic() + TIMEOUT_S
        while loop_thread.run(lambda: transport.pending_bytes):  # the last record's send
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert corked(loop_thread, probe) == 0  # drained: uncorked, the tail pushed
    finally:
        loop_thread.run(transport.abort)
        client.close()
        probe.close()


def test_a_file_shorter_than_its_range_over_tls_ends_as_a_truncated_file(
        tmp_path: Path, loop_thread: LoopThread) -> None:
    """The file ends before the range it was queued with: the connection ends with the same
    `FileTruncated` as plain sendfile's (which the HTTP connection reports in one warning),
    not an anonymous ConnectionAbortedError."""
    server_side, client_side = tcp_pair()
    path = tmp_path / "short.bin"
    path.write_bytes(b"x" * 10_000)
    protocol = Recorder()
    transport, client = _tls_over(tmp_path, loop_thread, server_side, client_side, protocol)
    try:
        protocol.wait_for("made")
        loop_thread.run(lambda: transport.write_file(path.open("rb"), 0, 100_000))
        [lost] = protocol.wait_for("lost")
        assert isinstance(lost, FileTruncated) and lost.missing == 90_000
    finally:
        loop_thread.run(transport.abort)
        client.close()


def test_handshake_failure_reasons_are_slugs_like_the_others() -> None:
    from reactor.conn.tls import _os_reason, _ssl_reason
    assert _ssl_reason(ssl.SSLError("closed before TLS handshake with data in recv buffer.")
                       ) == "closed-before-tls-handshake-with-data-in-recv-buffer"
    assert _os_reason(OSError(113, "No route to host")) == "no-route-to-host"
    assert _os_reason(ConnectionResetError()) == "connection-reset"


def test_a_hello_then_reset_before_the_wrap_is_logged_as_a_slug(
        tmp_path: Path, loop_thread: LoopThread) -> None:
    """A client that sends its ClientHello and resets before the server wraps the socket:
    Python's ssl raises an SSLError whose `reason` is a sentence ("Closed before TLS
    handshake with data in recv buffer."); the rejected line's reason is its slug, as for
    every other failure (seen in a soak: ~1 in 20 aborted handshakes logged the sentence)."""
    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("server", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    listener = socket.create_server(("127.0.0.1", 0))
    client_side = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_S)
    client_side.sendall(outgoing.read())
    client_side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client_side.close()  # RST: the server's socket is no longer connected, the hello unread
    server_side, _ = listener.accept()
    listener.close()
    server_side.setblocking(False)
    reported: list[dict[str, object]] = []

    def start() -> None:
        TlsTransport(loop_thread.loop, server_side, ("127.0.0.1", 1), TlsContexts(context),
                     report=reported.append).start(Recorder())
    loop_thread.run(start)
    deadline = time.monotonic() + TIMEOUT_S
    while not reported:
        assert time.monotonic() < deadline, "the failed handshake was never reported"
        time.sleep(0.01)
    assert reported[0]["event_kind"] == "tls-handshake-failed"
    assert reported[0]["reason"] == "closed-before-tls-handshake-with-data-in-recv-buffer"
