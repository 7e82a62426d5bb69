"""Many connections at once, and one connection's trouble never reaching another."""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from reactor.app.types import Response
from reactor.conn.server import HttpServer
from reactor.loop import EventLoop
from tests.conftest import (
    RAW_TIMEOUT_S,
    RawClient,
    on_loop,
    request_bytes,
    start_server,
    wait_for_log,
    wait_until,
)
from tests.conn.conftest import RecordingLog


def open_connections(running) -> int:  # type: ignore[no-untyped-def]
    return on_loop(running, lambda: len(running.server.http.connections))


@contextlib.contextmanager
def two_silent(running) -> Iterator[tuple[RawClient, RawClient]]:  # type: ignore[no-untyped-def]
    """Two connections that have sent nothing, the first the older, both open on the server."""
    with RawClient.to(running) as oldest:
        assert wait_until(lambda: open_connections(running) == 1)
        with RawClient.to(running) as newer:
            assert wait_until(lambda: open_connections(running) == 2)
            yield oldest, newer


def reusable_connections(running) -> int:  # type: ignore[no-untyped-def]
    return on_loop(running, lambda: sum(
        transport.protocol.reusable for transport in running.server.http.connections))


def test_200_concurrent_connections_are_served_at_once(running_server):
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(RawClient.to(running_server)) for _ in range(200)]
        assert wait_until(lambda: open_connections(running_server) == 200)
        for i, client in enumerate(clients):
            client.send(request_bytes("GET", f"/echo/client-{i}"))
        for i, client in enumerate(clients):
            response = client.read_response()
            assert response.status == 200
            assert response.body == f"client-{i}".encode()
        # every connection is still open and usable for a second round
        assert open_connections(running_server) == 200
        for i, client in enumerate(reversed(clients)):
            client.send(request_bytes("GET", f"/echo/again-{i}"))
        for i, client in enumerate(reversed(clients)):
            assert client.read_response().body == f"again-{i}".encode()
    assert wait_until(lambda: open_connections(running_server) == 0)


def test_a_stalled_request_does_not_hold_up_others(running_server):
    with RawClient.to(running_server) as stalled, RawClient.to(running_server) as other:
        stalled.send(b"GET /echo/never-finished HTTP/1.1\r\nHost: t\r\n")
        stalled_upload = RawClient.to(running_server)
        with stalled_upload:
            stalled_upload.send(request_bytes("POST", "/files/slow", {"Content-Length": "100"})
                                + b"only part")
            other.send(request_bytes("GET", "/echo/prompt"))
            assert other.read_response().body == b"prompt"
            # answered while both stalled requests still wait, unanswered and open (not once
            # their timeouts freed the server)
            assert select.select([stalled.sock, stalled_upload.sock], [], [], 0)[0] == []
            assert open_connections(running_server) == 3


def test_a_protocol_error_does_not_disturb_another_connection(running_server):
    with RawClient.to(running_server) as good, RawClient.to(running_server) as bad:
        good.send(request_bytes("GET", "/echo/one"))
        assert good.read_response().body == b"one"
        bad.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n")
        assert bad.read_response().status == 400
        assert bad.is_closed_by_peer()
        good.send(request_bytes("GET", "/echo/two"))
        assert good.read_response().body == b"two"


def test_a_reset_connection_does_not_disturb_others(running_server, files_dir):
    (files_dir / "big").write_bytes(b"r" * 2_000_000)
    with RawClient.to(running_server) as rude:
        rude.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.send(request_bytes("GET", "/files/big"))
        rude.sock.recv(1000)
    # closed with RST while the server still had most of the file to send
    with RawClient.to(running_server) as polite:
        polite.send(request_bytes("GET", "/echo/fine"))
        assert polite.read_response().body == b"fine"
    assert wait_until(lambda: open_connections(running_server) == 0)
    assert wait_until(lambda: _open_descriptors_of(files_dir / "big") == 0)  # file closed


def test_concurrent_uploads_from_threads(running_server, files_dir):
    payloads = {f"file-{i}": os.urandom(10_000 + i) for i in range(16)}
    shared = [bytes([i]) * 50_000 for i in range(8)]
    errors: list[BaseException] = []

    def upload(name: str, data: bytes) -> None:
        try:
            connection = http.client.HTTPConnection(running_server.host, running_server.port,
                                                    timeout=5)
            try:
                connection.request("POST", f"/files/{name}", body=data)
                response = connection.getresponse()
                response.read()
                assert response.status == 201
            finally:
                connection.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=item) for item in payloads.items()]
    threads += [threading.Thread(target=upload, args=("shared", data)) for data in shared]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    for name, data in payloads.items():
        assert (files_dir / name).read_bytes() == data
    assert (files_dir / "shared").read_bytes() in shared  # one whole upload, never a mix
    assert sorted(p.name for p in files_dir.iterdir()) == sorted([*payloads, "shared"])


def _open_descriptors_of(path) -> int:  # type: ignore[no-untyped-def]
    """How many descriptors of this process (server included) have `path` open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            pass
    return count


def test_pipelined_large_files_hold_a_bounded_number_of_descriptors(running_server,
                                                                     files_dir):
    size = 256 * 1024
    (files_dir / "large.bin").write_bytes(b"L" * size)
    count = 200
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/files/large.bin") * count)  # and read nothing yet
        # Give the server time to work through whatever it will queue without a reader.
        wait_until(lambda: _open_descriptors_of(files_dir / "large.bin") > 8, timeout=1.0)
        held = _open_descriptors_of(files_dir / "large.bin")
        for _ in range(count):
            response = client.read_response()
            assert response.status == 200 and len(response.body) == size
    assert held <= 8, f"{held} open descriptors of one file for one slow reader"
    assert wait_until(lambda: _open_descriptors_of(files_dir / "large.bin") == 0)


@pytest.mark.expect_log("connection-limit-reached")
def test_at_the_limit_an_idle_keep_alive_connection_makes_room(tmp_path):
    # nginx's reuse of keep-alive connections when worker_connections run out: the new
    # client is served, an idle one closes (a client expects that and retries), and the
    # operator hears of it once, in a warning.
    running = start_server(tmp_path, server={"max_connections": 2})
    try:
        with RawClient.to(running) as idle, RawClient.to(running) as busy:
            idle.send(request_bytes("GET", "/echo/first"))
            assert idle.read_response().body == b"first"  # now idle, kept alive
            busy.send(b"GET /echo/half HTTP/1.1\r\nHost: t\r\n")  # mid-request: not idle
            assert wait_until(lambda: open_connections(running) == 2)
            with RawClient.to(running) as new:
                new.send(request_bytes("GET", "/echo/new"))
                assert new.read_response().body == b"new"
            assert idle.is_closed_by_peer()
            busy.send(b"\r\n")
            assert busy.read_response().body == b"half"
        line = wait_for_log(running.error_log,
                            lambda x: x["event"] == "connection-limit-reached")[0]
        assert (line["level"], line["max_connections"], line["idle_closed"],
                line["refused_503"]) == ("warning", 2, 1, 0)
        counters = running.server.http.counters
        assert counters["connections_reused_total"] == 1
        assert "connections_shed_total" not in counters
    finally:
        running.stop()


@pytest.mark.expect_log("connection-limit-reached")
def test_at_the_limit_the_oldest_silent_connection_makes_room(tmp_path):
    # Connections that never sent a byte are nginx's "reusable" ones too: held open by a
    # client (or an attacker) they must not refuse every newcomer until header_s.
    running = start_server(tmp_path, server={"max_connections": 2})
    try:
        with two_silent(running) as (oldest, newer):
            with RawClient.to(running) as new:
                new.send(request_bytes("GET", "/echo/new"))
                assert new.read_response().body == b"new"
            assert oldest.is_closed_by_peer()
            newer.send(request_bytes("GET", "/echo/newer"))  # the newer one was kept
            assert newer.read_response().body == b"newer"
        assert running.server.http.counters["connections_reused_total"] == 1
        assert "connections_shed_total" not in running.server.http.counters
    finally:
        running.stop()


@pytest.mark.expect_log("connection-limit-reached")
def test_at_the_limit_a_silent_connection_whose_request_is_unread_is_not_closed(tmp_path):
    # The oldest silent connection's request is in its socket, but the loop takes the
    # listener's event first: closing that connection would reset the request away (the
    # client sent it and gets no answer); the newer, still silent one makes room instead.
    running = start_server(tmp_path, server={"max_connections": 2})
    try:
        with two_silent(running) as (oldest, newer):
            held, release = threading.Event(), threading.Event()

            def hold() -> None:  # the loop waits: the next events come in one batch
                held.set()
                release.wait(10)
            running.server.http.loop.call_soon_threadsafe(hold)
            assert held.wait(10)
            try:
                new = RawClient.to(running)  # the listener is ready first ...
                oldest.send(request_bytes("GET", "/echo/oldest"))  # ... then this
            finally:
                release.set()
            with new:
                new.send(request_bytes("GET", "/echo/new"))
                assert new.read_response().body == b"new"
            assert oldest.read_response().body == b"oldest"
            assert newer.is_closed_by_peer()
        assert running.server.http.counters["connections_reused_total"] == 1
    finally:
        running.stop()


@pytest.mark.expect_log("connection-limit-reached")
def test_connections_over_the_limit_are_shed_with_503(tmp_path):
    running = start_server(tmp_path, server={"max_connections": 2})
    try:
        with RawClient.to(running) as one, RawClient.to(running) as two:
            for client in (one, two):  # mid-request: neither may be closed to make room
                client.send(b"GET /echo/kept HTTP/1.1\r\nHost: t\r\n")
            assert wait_until(lambda: open_connections(running) == 2
                              and reusable_connections(running) == 0)
            with RawClient.to(running) as three:
                response = three.read_response()  # answered without a request
                assert response.status == 503
                assert response.header("retry-after") == "1"
                assert response.header("connection") == "close"
                assert three.is_closed_by_peer()
            for client in (one, two):
                client.send(b"\r\n")
                assert client.read_response().body == b"kept"
        line = wait_for_log(running.access_log, lambda x: x["event"] == "conn_shed")[0]
        assert (line["status"], line["reason"]) == (503, "connection-limit")
        assert running.server.http.counters["connections_shed_total"] == 1
        warning = wait_for_log(running.error_log,
                               lambda x: x["event"] == "connection-limit-reached")[0]
        assert (warning["idle_closed"], warning["refused_503"]) == (0, 1)
        assert wait_until(lambda: open_connections(running) == 0)
        with RawClient.to(running) as again:  # room again
            again.send(request_bytes("GET", "/echo/room"))
            assert again.read_response().body == b"room"
    finally:
        running.stop()


class _SheddingServer:
    """A server at its connection limit (max_connections=0: every new connection is over
    it) on a loop whose clock the test sets; `shed_one()` sheds one by hand and `reports`
    collects the loop's warnings."""

    def __init__(self) -> None:
        self.loop = EventLoop()
        self.now = 100.0
        self.loop.time = lambda: self.now  # type: ignore[method-assign]
        self.reports: list[tuple[str, dict]] = []
        self.loop.set_report_handler(lambda event, fields: self.reports.append((event, fields)))
        self.server = HttpServer(self.loop, lambda request: Response(200), RecordingLog(),
                                 max_connections=0)

    def shed_one(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.server.accept(ours, ("127.0.0.1", 1))
            assert theirs.recv(4096).startswith(b"HTTP/1.1 503 ")

    def refused(self) -> list[int]:
        return [fields["refused_503"] for _, fields in self.reports]


@pytest.fixture
def shedding():  # type: ignore[no-untyped-def]
    """A server at its limit that has shed three connections within one window."""
    server = _SheddingServer()
    try:
        for _ in range(3):
            server.shed_one()
        assert server.refused() == [1]
        yield server
    finally:
        server.loop.close()


def test_the_connection_limit_warning_comes_once_per_10_s_with_what_happened_since(
        shedding: _SheddingServer) -> None:
    # the first shed warns at once, the ones within 10 s are only counted, and the next
    # warning carries their number
    shedding.now += 10.0
    shedding.shed_one()
    assert [(event, fields["refused_503"], fields["idle_closed"])
            for event, fields in shedding.reports] == [("connection-limit-reached", 1, 0),
                                                       ("connection-limit-reached", 3, 0)]
    assert shedding.server.counters["connections_shed_total"] == 4


def test_what_happens_within_the_window_is_told_when_it_ends(
        shedding: _SheddingServer) -> None:
    # Without another event after the window (the burst is over), the warning still comes:
    # it used to wait for the next shed, maybe hours later, and then mix the two bursts.
    shedding.now += 10.0
    shedding.loop.call_soon(lambda: None)  # a pass that does not wait for I/O
    shedding.loop._run_once()  # the window's timer is due: no new event needed
    assert shedding.refused() == [1, 2]
    assert not shedding.server._limit_window.pending  # nothing more pending, nothing to say


REQUESTS_PER_PASS = 32  # reactor.conn.http's


def test_a_pipelining_client_lets_the_others_in_between(running_server):
    """2,000 requests pipelined in one write were answered in one go, holding the loop (and
    every other connection) ~70 ms a read; a pass answers REQUESTS_PER_PASS, then yields."""
    count = 2000
    with RawClient.to(running_server) as flood, RawClient.to(running_server) as other:
        assert wait_until(lambda: open_connections(running_server) == 2)
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:  # on the loop: both clients' bytes are waiting when it reads
            holding.set()
            release.wait(RAW_TIMEOUT_S)

        running_server.call(hold)
        assert holding.wait(RAW_TIMEOUT_S)
        flood.send(request_bytes("GET", "/echo/flood") * count)
        other.send(request_bytes("GET", "/echo/other"))
        time.sleep(0.05)  # loopback has delivered them; the loop sees both in one select
        release.set()
        assert other.read_response().body == b"other"
        answered = 0
        while answered < count:
            answered += flood.sock.recv(1 << 20).count(b"HTTP/1.1 200 ")
        lines = wait_for_log(running_server.access_log,
                             lambda line: line.get("event") == "request", count + 1)
        paths = [line["path"] for line in lines]
        assert paths.count("/echo/flood") == count
        assert paths.index("/echo/other") <= 2 * REQUESTS_PER_PASS


def test_pipelined_requests_then_a_half_close_are_all_answered(running_server):
    # more than one pass's worth, and the EOF arrives while the rest waits its turn
    count = 5 * REQUESTS_PER_PASS
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/echo/x") * count)
        client.sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := client.sock.recv(1 << 20):
            data += chunk
    assert data.count(b"HTTP/1.1 200 ") == count
