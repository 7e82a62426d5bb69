"""SocketTransport over a real socketpair: reads, batched writes, markers, back-pressure,
closing, and the protocol switch."""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

import pytest

from reactor.conn.interfaces import StreamProtocol, Transport
from reactor.conn.transport import HIGH_WATER_BYTES, SocketTransport
from tests.conftest import wait_until
from tests.conn.conftest import TIMEOUT_S, LoopThread, recv_all, recv_until


class Recorder:
    """A protocol that records its callbacks; `reply` answers each read when set."""

    def __init__(self, reply: bytes = b"") -> None:
        self.events: list[tuple[str, Any]] = []
        self.transport: Transport | None = None
        self.reply = reply
        self.changed = threading.Condition()

    def _record(self, name: str, value: Any = None) -> None:
        with self.changed:
            self.events.append((name, value))
            self.changed.notify_all()

    def wait_for(self, name: str, count: int = 1) -> list[Any]:
        with self.changed:
            assert self.changed.wait_for(
                lambda: sum(1 for n, _ in self.events if n == name) >= count, TIMEOUT_S), (
                f"no {name!r} in {self.events}")
            return [v for n, v in self.events if n == name]

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._record("made")

    def data_received(self, data: bytes) -> None:
        self._record("data", data)
        if self.reply and self.transport is not None:
            self.transport.write(self.reply)

    def eof_received(self) -> None:
        self._record("eof")

    def connection_lost(self, exc: BaseException | None) -> None:
        self._record("lost", exc)

    def pause_writing(self) -> None:
        self._record("pause")

    def resume_writing(self) -> None:
        self._record("resume")

    def write_blocked(self) -> None:
        self._record("blocked")

    def shutdown(self) -> None:
        self._record("shutdown")


def start(loop_thread: LoopThread, sock: socket.socket, protocol: StreamProtocol,
          closed: list[SocketTransport] | None = None) -> SocketTransport:
    def make() -> SocketTransport:
        transport = SocketTransport(loop_thread.loop, sock, ("peer", 1),
                                    on_closed=closed.append if closed is not None else None)
        transport.start(protocol)
        return transport
    transport: SocketTransport = loop_thread.run(make)
    return transport


def test_reads_reach_the_protocol_and_writes_reach_the_peer(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    protocol = Recorder(reply=b"pong")
    start(loop_thread, server_side, protocol)
    client.sendall(b"ping")
    assert protocol.wait_for("data") == [b"ping"]
    assert recv_until(client, b"pong") == b"pong"


def test_eof_then_close_reports_lost_and_the_registry_callback(loop_thread, socket_pair
                                                                 ) -> None:
    server_side, client = socket_pair
    protocol = Recorder()
    closed: list[SocketTransport] = []
    transport = start(loop_thread, server_side, protocol, closed)
    client.shutdown(socket.SHUT_WR)
    protocol.wait_for("eof")
    loop_thread.run(transport.close)
    protocol.wait_for("lost")
    assert loop_thread.run(lambda: closed) == [transport]
    assert recv_all(client) == b""


def test_markers_run_in_order_once_bytes_are_sent(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    transport = start(loop_thread, server_side, Recorder())
    seen: list[str] = []

    def queue() -> None:
        transport.write(b"one")
        transport.when_sent(lambda label, unsent: seen.append(label), "after-one")
        transport.write_many(b"two", b"three")
        transport.when_sent(lambda label, unsent: seen.append(label), "after-three")

    loop_thread.run(queue)
    assert recv_until(client, b"three") == b"onetwothree"
    assert loop_thread.run(lambda: list(seen)) == ["after-one", "after-three"]


def test_write_file_goes_out_by_sendfile(loop_thread, socket_pair, tmp_path) -> None:
    server_side, client = socket_pair
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    transport = start(loop_thread, server_side, Recorder())
    loop_thread.run(lambda: transport.write_file(path.open("rb"), 100, 1000))
    data = b""
    while len(data) < 1000:
        data += client.recv(65536)
    assert data == path.read_bytes()[100:1100]
    assert loop_thread.run(lambda: transport.sendfile_bytes) == 1000


def start_blocked(loop_thread: LoopThread, sock: socket.socket
                  ) -> tuple[SocketTransport, Recorder, bytes]:
    """A transport with four times the high-water mark queued that the peer does not read
    yet: its socket is full and the write blocked."""
    protocol = Recorder()
    transport = start(loop_thread, sock, protocol)
    big = b"x" * (HIGH_WATER_BYTES * 4)
    loop_thread.run(transport.write, big)
    protocol.wait_for("blocked")
    return transport, protocol, big


def test_back_pressure_pauses_and_resumes_the_protocol(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    transport, protocol, big = start_blocked(loop_thread, server_side)
    protocol.wait_for("pause")
    received = 0
    while received < len(big):
        received += len(client.recv(1 << 20))
    protocol.wait_for("resume")
    assert loop_thread.run(lambda: transport.pending_bytes) == 0


def test_close_with_linger_half_closes_after_the_buffer_drains(loop_thread, socket_pair
                                                                 ) -> None:
    server_side, client = socket_pair
    protocol = Recorder()
    transport = start(loop_thread, server_side, protocol)

    def answer_and_close() -> None:
        transport.write(b"last words")
        transport.close(linger=True)

    loop_thread.run(answer_and_close)
    assert recv_all(client) == b"last words"  # FIN after the data, no reset
    client.sendall(b"late input is drained, not answered with a reset")
    client.shutdown(socket.SHUT_WR)
    protocol.wait_for("lost")


def test_abort_drops_unsent_output_and_reports_lost(loop_thread, socket_pair) -> None:
    server_side, _client = socket_pair
    protocol = Recorder()
    transport = start(loop_thread, server_side, protocol)
    loop_thread.run(transport.write, b"x" * (HIGH_WATER_BYTES * 8))
    loop_thread.run(transport.abort)
    protocol.wait_for("lost")
    assert loop_thread.run(lambda: transport.pending_bytes) == 0


def test_set_protocol_hands_over_with_the_trailing_bytes(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    first, second = Recorder(), Recorder(reply=b"from-second")
    transport = start(loop_thread, server_side, first)
    loop_thread.run(transport.set_protocol, second, b"already-read")
    assert second.wait_for("data") == [b"already-read"]
    client.sendall(b"later")
    assert second.wait_for("data", 2) == [b"already-read", b"later"]
    assert recv_until(client, b"from-second" * 2) == b"from-second" * 2
    assert [name for name, _ in first.events] == ["made"]  # the first one hears no more
    assert loop_thread.run(lambda: transport.protocol) is second


def test_read_now_reads_even_while_paused(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    protocol = Recorder()
    transport = start(loop_thread, server_side, protocol)
    loop_thread.run(transport.pause_reading)
    client.sendall(b"sent before the stop")  # a unix socketpair: in our buffer on return
    loop_thread.run(transport.read_now)
    assert [v for n, v in protocol.events if n == "data"] == [b"sent before the stop"]


def tcp_pair(sndbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
    """(server side, client side) of a real TCP connection on 127.0.0.1."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_S)
    server_side, _ = listener.accept()
    listener.close()
    server_side.setblocking(False)
    if sndbuf is not None:
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return server_side, client


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def corked(loop_thread: LoopThread, sock: socket.socket) -> int:
    return int(loop_thread.run(sock.getsockopt, socket.IPPROTO_TCP, socket.TCP_CORK))


def readable_now(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_a_head_sent_before_its_file_waits_for_the_files_first_bytes(loop_thread) -> None:
    # MSG_MORE: held (up to the kernel's 200 ms) until the next send, which pushes both. On
    # loopback a pushed send is in the peer's queue when the call returns.
    server_side, client = tcp_pair()
    transport = start(loop_thread, server_side, Recorder())
    try:
        loop_thread.run(transport.send_chunks, [b"head\r\n"], True)
        assert not readable_now(client)
        loop_thread.run(transport.send_chunks, [b"file"])
        assert recv_exactly(client, 10) == b"head\r\nfile"
    finally:
        loop_thread.run(transport.abort)
        client.close()


def test_a_file_answer_leaves_whole_without_corking_and_the_next_is_not_held(
        loop_thread, tmp_path) -> None:
    server_side, client = tcp_pair(sndbuf=64 * 1024)
    path = tmp_path / "big.bin"
    body = bytes(range(256)) * 16 * 1024  # 4 MiB: more than the socket takes at once
    path.write_bytes(body)
    protocol = Recorder()
    transport = start(loop_thread, server_side, protocol)
    try:
        loop_thread.run(lambda: (transport.write(b"head\r\n"),
                                 transport.write_file(path.open("rb"), 0, len(body))))
        protocol.wait_for("blocked")  # the client reads nothing yet: the file is pending
        assert corked(loop_thread, server_side) == 0  # the head went as MSG_MORE instead
        assert recv_exactly(client, 6 + len(body)) == b"head\r\n" + body
        protocol.wait_for("resume")
        assert loop_thread.run(lambda: transport.pending_bytes) == 0
        loop_thread.run(transport.write, b"next")  # a later small answer is not held back
        assert recv_exactly(client, 4) == b"next"
    finally:
        loop_thread.run(transport.abort)
        client.close()


def test_a_file_over_a_unix_socket_arrives_whole(loop_thread, socket_pair, tmp_path) -> None:
    server_side, client = socket_pair  # MSG_MORE is accepted (and means nothing) here
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    transport = start(loop_thread, server_side, Recorder())
    for _ in range(2):
        loop_thread.run(lambda: (transport.write(b"head"),
                                 transport.write_file(path.open("rb"), 0, 1000)))
        assert recv_exactly(client, 1004) == b"head" + b"x" * 1000


def test_a_large_answer_the_socket_takes_does_not_pause_the_protocol(loop_thread) -> None:
    # A response over the high-water mark queued while input is handled: sent at once
    # rather than pausing (and later resuming) reading for a buffer the socket drains.
    server_side, client = tcp_pair(sndbuf=4 * 1024 * 1024)
    if server_side.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < 2 * HIGH_WATER_BYTES:
        server_side.close()
        client.close()
        pytest.skip("net.core.wmem_max keeps the send buffer under twice the high-water mark")
    protocol = Recorder(reply=b"r" * (HIGH_WATER_BYTES + 1024))
    transport = start(loop_thread, server_side, protocol)
    try:
        client.sendall(b"ask")
        assert recv_exactly(client, HIGH_WATER_BYTES + 1024) == b"r" * (HIGH_WATER_BYTES + 1024)
        names = [name for name, _ in protocol.events]
        assert "pause" not in names and "blocked" not in names, names
    finally:
        loop_thread.run(transport.abort)
        client.close()


def test_try_write_sends_at_once_when_nothing_waits(loop_thread, socket_pair) -> None:
    server_side, client = socket_pair
    transport = start(loop_thread, server_side, Recorder())
    assert loop_thread.run(transport.try_write, b"answer") is True
    assert loop_thread.run(lambda: transport.pending_bytes) == 0
    assert recv_exactly(client, 6) == b"answer"


def test_try_write_queues_behind_what_waits_and_keeps_the_order(loop_thread, socket_pair
                                                                ) -> None:
    server_side, client = socket_pair
    transport, _protocol, big = start_blocked(loop_thread, server_side)
    assert loop_thread.run(transport.try_write, b"after") is False  # queued behind it
    assert recv_exactly(client, len(big) + 5) == big + b"after"


def test_try_write_queues_the_part_a_full_socket_did_not_take(loop_thread, socket_pair
                                                             ) -> None:
    server_side, client = socket_pair
    transport = start(loop_thread, server_side, Recorder())
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
    assert loop_thread.run(transport.try_write, big) is False
    assert 0 < loop_thread.run(lambda: transport.pending_bytes) < len(big)
    assert recv_exactly(client, len(big)) == big


@pytest.mark.parametrize("linger", [False, True])
def test_a_half_close_while_the_answer_drains_does_not_cut_it(loop_thread, socket_pair,
                                                              linger: bool) -> None:
    """The peer's EOF read while a closing transport still drains its answer is the end of
    its input (RFC 9112 9.6), not an abort: every byte still goes out (the close came first
    and dropped the rest: a clean FIN after a truncated body)."""
    server_side, client = socket_pair
    protocol = Recorder()
    transport = start(loop_thread, server_side, protocol)
    answer = bytes(range(256)) * (HIGH_WATER_BYTES // 64)  # 4x the high-water mark

    def answer_and_close() -> None:
        transport.write(answer)
        transport.close(linger=linger)

    loop_thread.run(answer_and_close)
    client.shutdown(socket.SHUT_WR)  # the client is done sending; it reads on
    loop_thread.run(transport.resume_reading)  # as the protocol does below the low water
    assert recv_all(client) == answer
    protocol.wait_for("lost")


def test_delivery_says_what_the_peer_acknowledged_and_what_the_kernel_holds(
        loop_thread, socket_pair) -> None:
    # The WebSocket ping timeout reads it: output still being delivered is a live peer.
    server_side, client = tcp_pair()
    transport = start(loop_thread, server_side, Recorder())
    try:
        before = loop_thread.run(transport.delivery)
        assert before is not None and before[1] == 0
        loop_thread.run(transport.write, b"x" * 100_000)
        assert recv_exactly(client, 100_000) == b"x" * 100_000

        def delivered() -> bool:
            acked, queued = loop_thread.run(transport.delivery)
            return acked == before[0] + 100_000 and queued == 0
        assert wait_until(delivered)
    finally:
        loop_thread.run(transport.abort)
        client.close()
    unix = start(loop_thread, socket_pair[0], Recorder())  # no TCP: it cannot say
    try:
        assert loop_thread.run(unix.delivery) is None
    finally:
        loop_thread.run(unix.abort)
