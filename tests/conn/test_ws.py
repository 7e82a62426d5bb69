"""WebSocket sessions over real sockets: upgrade, echo, fragments across reads, pings while a
handler blocks, the deflate bomb, a slow consumer, graceful shutdown, the session log line."""

from __future__ import annotations

import socket
import threading
import time
import types
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.app.application import build_app
from reactor.app.types import Request, Response
from reactor.app.websocket import WebSocket, WebSocketHandler
from reactor.conn.server import HttpServer
from reactor.conn.ws import WebSocketConnection, WebSocketSettings
from reactor.proto import deflate as deflate_module
from reactor.proto.websocket import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    Message,
    Ping,
    Pong,
    WebSocketParser,
    encode_close,
    encode_frame,
)
from tests.conftest import (
    RawClient,
    RunningServer,
    on_loop,
    request_bytes,
    start_server,
    wait_for_log,
    wait_until,
)
from tests.conn.conftest import TIMEOUT_S, LoopThread, RecordingLog, recv_all, recv_until
from tests.wsclient import HandshakeRefused, WsClient


def session_lines(running: RunningServer, count: int = 1, timeout: float = 10.0) -> list[dict]:
    return wait_for_log(running.access_log, lambda line: line.get("event") == "websocket",
                        count, timeout=timeout)


@pytest.fixture
def ws_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.0})
    yield running
    running.stop()


def client(running: RunningServer, path: str = "/ws/echo", **kw: object) -> WsClient:
    return WsClient(running.host, running.port, path, **kw)  # type: ignore[arg-type]


def add_route(running: RunningServer, path: str, factory: type[WebSocketHandler]) -> None:
    on_loop(running, lambda: running.server.app.websocket(path)(factory))


def test_echo_text_and_binary_and_session_log(ws_server: RunningServer) -> None:
    with client(ws_server) as ws:
        ws.send("héllo")
        assert repr(ws.recv()) == repr(Message("héllo", 0))
        ws.send(b"\x00\xff")
        event = ws.recv()
        assert isinstance(event, Message) and event.data == b"\x00\xff"
        reply = ws.close(1000, "bye")
        assert isinstance(reply, Close) and reply.code == 1000
        assert ws.is_closed_by_peer()
    [line] = session_lines(ws_server)
    assert line["close_code"] == 1000 and line["closed_by"] == "client"
    assert line["messages_in"] == 2 and line["messages_out"] == 2
    assert line["bytes_in"] > 0 and line["bytes_out"] > 0 and line["duration_ms"] >= 0
    [upgrade] = wait_for_log(ws_server.access_log, lambda ln: ln.get("status") == 101)
    assert upgrade["path"] == "/ws/echo"


GOOD_UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA==", "Sec-WebSocket-Version": "13"}


@pytest.mark.parametrize(("method", "changes", "status", "reason"), [
    ("GET", {"Sec-WebSocket-Version": "8"}, 426, b"websocket-version-unsupported"),
    ("GET", {"Connection": "keep-alive"}, 400, b"connection-upgrade-missing"),
    ("GET", {"Sec-WebSocket-Key": "short"}, 400, b"websocket-key-invalid"),
    ("GET", {"Sec-WebSocket-Key": None}, 400, b"websocket-key-missing"),
    ("HEAD", {}, 400, b"websocket-needs-get"),
])
def test_bad_upgrade_is_refused_with_reason(ws_server: RunningServer, method: str,
                                            changes: dict[str, str | None], status: int,
                                            reason: bytes) -> None:
    fields = {**GOOD_UPGRADE, **changes}
    head = f"{method} /ws/echo HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
    with socket.create_connection((ws_server.host, ws_server.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data or (method == "GET" and reason not in data):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 %d " % status)
    if method == "GET":
        assert reason in data
    if status == 426:  # what to upgrade to (RFC 9110 15.5.22), and the versions we speak
        assert b"Sec-WebSocket-Version: 13" in data
        assert b"\r\nUpgrade: websocket\r\n" in data and b"\r\nConnection: upgrade\r\n" in data


class BodyHeld(WebSocketHandler):
    """Says how much of the upgrade request's body the session holds."""

    def on_open(self) -> None:
        self.ws.send(f"holding {len(self.ws.request.body)}")


def test_a_body_sent_with_the_upgrade_is_read_but_not_kept_for_the_session(
        ws_server: RunningServer) -> None:
    """A handshake has no body (RFC 6455 4.1); one sent is read (RFC 9110 7.8: before the
    switch) -- but a session may last for days, and 1000 idle sessions each holding a
    16 MiB (limits.max_body_bytes) body would be 16 GiB."""
    add_route(ws_server, "/ws/body", BodyHeld)
    fields = {**GOOD_UPGRADE, "Content-Length": "100000"}
    with socket.create_connection((ws_server.host, ws_server.port), timeout=10) as sock:
        sock.sendall(b"GET /ws/body HTTP/1.1\r\nHost: x\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in fields.items()).encode()
            + b"\r\n" + b"b" * 100_000 + encode_frame(OP_TEXT, b"after", mask=b"abcd"))
        head, _, rest = recv_until(sock, b"\r\n\r\n").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        parser = WebSocketParser(client=True)
        events = parser.receive(rest)
        while not events:
            events = parser.receive(sock.recv(65536))
    assert repr(events[0]) == repr(Message("holding 0", 0))


def test_plain_get_on_websocket_route_gets_426(ws_server: RunningServer) -> None:
    with socket.create_connection((ws_server.host, ws_server.port), timeout=10) as sock:
        sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 426 ") and b"websocket-upgrade-required" in data
    assert b"\r\nUpgrade: websocket\r\n" in data
    assert b"\r\nConnection: close, upgrade\r\n" in data


def test_fragmented_message_across_many_reads(ws_server: RunningServer) -> None:
    text = "fragments é€ " * 200
    payload = text.encode()
    with client(ws_server) as ws:
        pieces = [payload[i:i + 97] for i in range(0, len(payload), 97)]
        stream = b"".join(
            ws.frame(OP_TEXT if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
            + (ws.frame(OP_PING, b"mid") if i == 3 else b"")
            for i, piece in enumerate(pieces))
        for pos in range(0, len(stream), 7):  # 7-byte writes, each its own segment
            ws.send_raw(stream[pos:pos + 7])
            if pos % 700 == 0:
                time.sleep(0.001)
        pong = ws.recv_event()  # the ping between fragments is answered at once
        assert isinstance(pong, Pong) and pong.payload == b"mid"
        event = ws.recv()
        assert isinstance(event, Message) and event.data == text


class Sleepy(WebSocketHandler):
    """Blocks its pool thread for 5 s per message, then echoes."""

    def on_message(self, data: str | bytes) -> None:
        time.sleep(5.0)
        self.ws.send(data)


def test_pings_continue_while_a_handler_sleeps_in_the_pool(tmp_path: Path) -> None:
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.2,
                                                "ping_timeout_s": 1.0})
    try:
        add_route(running, "/ws/sleepy", Sleepy)
        with client(running, "/ws/sleepy") as ws:
            ws.send("wake me")
            event = ws.recv(timeout=30)  # answers the server's pings meanwhile
            assert isinstance(event, Message) and event.data == "wake me"
            assert ws.pings >= 5  # pings kept coming while the handler slept
            assert isinstance(ws.close(), Close)
        [line] = session_lines(running)
        assert line["close_code"] == 1000 and line["closed_by"] == "client"
    finally:
        running.stop()


class Busy(WebSocketHandler):
    """Takes 10 ms of the pool per message, then echoes it."""

    def on_message(self, data: str | bytes) -> None:
        time.sleep(0.01)
        self.ws.send(data)


def test_a_backlog_of_messages_is_no_ping_timeout(tmp_path: Path) -> None:
    """100 messages at once: reading stops until the handler has caught up (~1 s), and the
    client's pongs wait unread meanwhile -- the client is alive, not timed out."""
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.1,
                                                "ping_timeout_s": 0.3})
    try:
        add_route(running, "/ws/busy", Busy)
        with client(running, "/ws/busy") as ws:
            ws.send_raw(b"".join(ws.encoder.message(f"m{i}") for i in range(100)))
            events = [ws.recv() for _ in range(100)]  # answering every ping meanwhile
            assert [repr(e) for e in events] == [repr(Message(f"m{i}", 0)) for i in range(100)]
            assert ws.pings >= 1
            assert isinstance(ws.close(), Close)
        [line] = session_lines(running)
        assert line["close_code"] == 1000 and line["closed_by"] == "client"
    finally:
        running.stop()


class Stuck(WebSocketHandler):
    """Its first message blocks the pool thread until the test lets it go."""

    release = threading.Event()

    def on_message(self, data: str | bytes) -> None:
        self.release.wait(TIMEOUT_S)


def test_messages_waiting_for_a_stuck_handler_are_bounded_in_bytes(tmp_path: Path) -> None:
    """40 messages of 100 KiB for a handler that is stuck: reading stops once about
    max_message_bytes (1 MiB) of them wait, not after 64 of them (64 MiB at the limit)."""
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.0})
    Stuck.release.clear()
    try:
        add_route(running, "/ws/stuck", Stuck)
        with client(running, "/ws/stuck") as ws:
            frames = b"".join(ws.encoder.message(b"m" * 102_400) for _ in range(40))
            sender = threading.Thread(target=ws.send_raw, args=(frames,), daemon=True)
            sender.start()

            def session() -> Any:
                [transport] = running.server.http.connections
                return transport.protocol

            # reading stops: the transport's reader is off (nothing public says so)
            assert wait_until(lambda: on_loop(
                running, lambda: not session().transport._reading)), \
                f"still reading after {on_loop(running, lambda: session().messages_in)}"
            assert on_loop(running, lambda: session().messages_in) <= 12
            Stuck.release.set()
            sender.join(TIMEOUT_S)
            assert wait_until(lambda: on_loop(running, lambda: session().messages_in) == 40)
    finally:
        Stuck.release.set()
        running.stop()


def test_pings_come_every_ping_interval_also_when_the_timeout_is_shorter(
        tmp_path: Path) -> None:
    """The interval is ping_interval_s, not min(ping_interval_s, ping_timeout_s): a pong
    back early does not bring the next ping forward."""
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.5,
                                                "ping_timeout_s": 0.1})
    try:
        with client(running) as ws:
            arrived = []
            while len(arrived) < 2:
                event = ws.recv_event()
                assert isinstance(event, Ping), event
                arrived.append(time.monotonic())
                ws.send_raw(ws.frame(OP_PONG, event.payload))  # answered at once
        assert arrived[1] - arrived[0] > 0.3  # 0.5 s apart (0.1 s before the fix)
    finally:
        running.stop()


class Firehose(WebSocketHandler):
    """Asked "go N", sends N messages of 256 KiB at once, then "done"."""

    inline = True

    def on_message(self, data: str | bytes) -> None:
        assert isinstance(data, str)
        for _ in range(int(data.split()[1])):
            self.ws.send(b"m" * 262_144)
        self.ws.send("done")


def test_a_ping_behind_megabytes_on_a_slow_link_is_no_ping_timeout(tmp_path: Path) -> None:
    """A client reading ~1.5 MB/s through a small TCP window, sent 1.5 MiB at once: our
    ping waits behind the messages (in our buffer and the kernel's), so its pong comes ~1 s
    later, well past ping_timeout_s. The client is alive and reading: that was a 1011 'ping
    timeout' (a false one: websockets and WebSocket-Node have it too); while the output
    ahead of the ping is still being delivered, the pong's wait starts again."""
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.1,
                                                "ping_timeout_s": 0.25})
    try:
        add_route(running, "/ws/firehose", Firehose)
        with client(running, "/ws/firehose", rcvbuf=16_384) as ws:
            ws.read_bytes, ws.read_pause_s = 16_384, 0.01
            ws.send("go 6")
            events = [ws.recv() for _ in range(7)]  # answering the pings on the way
            assert [len(e.data) for e in events if isinstance(e, Message)] == [
                262_144] * 6 + [4], events[-1]
            answer = ws.close()  # the ping behind the messages is answered on the way
            assert isinstance(answer, Close) and answer.code == 1000, answer
            assert ws.pings >= 1
        [line] = session_lines(running)
        assert (line["close_code"], line["closed_by"]) == (1000, "client"), line
    finally:
        running.stop()


def test_no_pong_closes_after_the_timeout(tmp_path: Path) -> None:
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.1,
                                                "ping_timeout_s": 0.3})
    try:
        with client(running) as ws:
            events = []
            while (event := ws.recv_event()) is not None:  # never answered
                events.append(event)
            assert type(events[0]).__name__ == "Ping"
            assert repr(events[-1]) == "Close(1011, 'ping timeout')"
        [line] = session_lines(running)
        assert line["close_code"] == 1011 and line["close_reason"] == "ping timeout"
        assert line["closed_by"] == "server"
    finally:
        running.stop()


def test_message_over_the_limit_closes_1009(tmp_path: Path) -> None:
    running = start_server(tmp_path, websocket={"max_message_bytes": 1000})
    try:
        with client(running) as ws:
            ws.send(b"x" * 1000)
            assert isinstance(ws.recv(), Message)
            ws.send(b"x" * 1001)
            event = ws.recv()
            assert isinstance(event, Close) and event.code == 1009
        [line] = session_lines(running)
        assert line["close_code"] == 1009 and line["closed_by"] == "server"
    finally:
        running.stop()


def test_deflate_echo_and_bomb(ws_server: RunningServer) -> None:
    with client(ws_server, deflate=True) as ws:
        assert ws.extensions is not None and ws.extensions.startswith(b"permessage-deflate")
        ws.send("compress me " * 100)
        event = ws.recv()
        assert isinstance(event, Message) and event.data == "compress me " * 100
        # 256 MiB of zeros in ~256 KiB: inflating it whole would take 256 MiB
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = compressor.compress(bytes(256 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        ws.send_raw(ws.frame(OP_BINARY, bomb[:-4], rsv1=True))
        event = ws.recv()
        assert isinstance(event, Close) and event.code == 1009
    [line] = session_lines(ws_server)
    assert line["close_code"] == 1009 and line["deflate"] is True


class BigText(WebSocketHandler):
    """Answers with a large compressible text message, sent from its pool thread."""

    def on_message(self, data: str | bytes) -> None:
        self.ws.send("compress me, " * 100_000)


def test_a_message_sent_from_the_pool_is_compressed_there_not_on_the_loop(
        ws_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """zlib on the loop stalls every other connection (a 30 MB text: ~0.7 s); the pool is
    where compression runs (DESIGN: threading contract)."""
    compressing: list[str] = []

    def compressobj(*args: int) -> object:
        compressing.append(threading.current_thread().name)
        return zlib.compressobj(*args)
    monkeypatch.setattr(deflate_module, "zlib", types.SimpleNamespace(
        **{**vars(zlib), "compressobj": compressobj}))
    add_route(ws_server, "/ws/big-text", BigText)
    with client(ws_server, "/ws/big-text", deflate=True) as ws:
        ws.send("go", compress=False)
        event = ws.recv()
    assert isinstance(event, Message) and event.data == "compress me, " * 100_000
    assert compressing and ws_server.thread.name not in compressing


class Burst(WebSocketHandler):
    """Answers with 200 messages of 64 KiB at once (on the loop)."""

    inline = True

    def on_message(self, data: str | bytes) -> None:
        for _ in range(200):
            self.ws.send(b"s" * 65536)


class Trickle(WebSocketHandler):
    """Answers with a 256 KiB message every 50 ms (from the pool) while the session is open."""

    def on_message(self, data: str | bytes) -> None:
        for _ in range(400):
            if not self.ws.open:
                return
            self.ws.send(b"t" * 262144)
            time.sleep(0.05)


@pytest.mark.parametrize(("handler", "reason"), [
    # the kernel's buffers fill, then ours: reading stops, the peer is dropped after write_s
    (Trickle, "slow consumer"),
    # more than the 4 MiB send buffer waits: dropped at once
    (Burst, "send buffer full"),
])
def test_slow_consumer_is_dropped_with_1008(tmp_path: Path, handler: type[WebSocketHandler],
                                            reason: str) -> None:
    running = start_server(tmp_path, timeouts={"write_s": 0.5},
                           websocket={"ping_interval_s": 0.0})
    try:
        add_route(running, "/ws/spam", handler)
        with client(running, "/ws/spam") as ws:
            ws.send("go")  # and never read
            [line] = session_lines(running, timeout=30)
            # what the kernel took still arrives (then the FIN); what was dropped did not
            # leave, and the line says so: bytes_out is what the peer could read
            received = 0
            while chunk := ws.sock.recv(1 << 20):
                received += len(chunk)
        assert line["close_code"] == 1008 and line["closed_by"] == "server"
        assert line["close_reason"] == reason
        assert line["bytes_out"] == received
    finally:
        running.stop()


def test_graceful_shutdown_sends_1001_and_waits_for_the_close(tmp_path: Path) -> None:
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.0})
    with client(running) as ws:
        ws.send("before")
        assert isinstance(ws.recv(), Message)
        running.call(running.server.stop)
        event = ws.recv()
        assert isinstance(event, Close) and event.code == 1001
        assert running.thread.is_alive()  # waiting for our Close
        ws.send_raw(ws.encoder.close(1001))
        assert ws.is_closed_by_peer()
    running.thread.join(10)
    assert not running.thread.is_alive()
    [line] = session_lines(running)
    assert line["close_code"] == 1001 and line["closed_by"] == "server"


class Pusher(WebSocketHandler):
    """Sends from a thread of its own (not the pool, not the loop)."""

    def on_open(self) -> None:
        threading.Thread(target=self.push).start()

    def push(self) -> None:
        for i in range(50):
            self.ws.send(f"push {i}")


class BufferReuser(WebSocketHandler):
    """Sends one bytearray from a thread of its own, rewriting it after each send (a reused
    read buffer)."""

    def on_open(self) -> None:
        threading.Thread(target=self.push).start()

    def push(self) -> None:
        buffer = bytearray(100)
        for i in range(50):
            buffer[:] = b"%03d" % i * 33 + b"."
            self.ws.send(buffer)


class WrongType(WebSocketHandler):
    """Sends an int from a thread of its own: the TypeError is raised there, not on the wire."""

    def on_open(self) -> None:
        threading.Thread(target=self.push).start()

    def push(self) -> None:
        try:
            self.ws.send(5)  # type: ignore[arg-type]
        except TypeError as exc:
            self.ws.send(f"refused: {exc}")


def test_a_send_of_the_wrong_type_raises_in_the_sender(ws_server: RunningServer) -> None:
    add_route(ws_server, "/ws/wrong", WrongType)
    with client(ws_server, "/ws/wrong") as ws:
        event = ws.recv()
    assert event.data == "refused: a WebSocket message is str or bytes, not int"  # type: ignore[union-attr]


def test_send_from_any_thread_keeps_order(ws_server: RunningServer) -> None:
    add_route(ws_server, "/ws/push", Pusher)
    with client(ws_server, "/ws/push") as ws:
        got = [ws.recv() for _ in range(50)]
    assert [e.data for e in got] == [f"push {i}" for i in range(50)]  # type: ignore[union-attr]


@pytest.mark.parametrize("deflate", [False, True])
def test_a_buffer_reused_after_send_does_not_change_the_message(ws_server: RunningServer,
                                                                 deflate: bool) -> None:
    add_route(ws_server, "/ws/reuse", BufferReuser)
    with client(ws_server, "/ws/reuse", deflate=deflate) as ws:
        got = [ws.recv() for _ in range(50)]
    assert [e.data for e in got] == [b"%03d" % i * 33 + b"." for i in range(50)]  # type: ignore[union-attr]


def test_refused_upgrade_raises(ws_server: RunningServer) -> None:
    with pytest.raises(HandshakeRefused) as info:
        client(ws_server, "/no/such/route")
    assert info.value.status == 404


# ---- over a socketpair: the real connection, buffers small enough to control ---------------


def ws_over_socketpair(loop_thread: LoopThread, server_side: socket.socket,
                       sock: socket.socket, handler: type[WebSocketHandler] | None = None,
                       **settings: float) -> tuple[HttpServer, RecordingLog]:
    """The built-in app's /ws/echo (or `handler` at /ws/test) on `server_side`, upgraded
    from `sock`."""
    log = RecordingLog()
    app = build_app(directory=None)
    path = b"/ws/echo"
    if handler is not None:
        app.websocket("/ws/test")(handler)
        path = b"/ws/test"

    def make() -> HttpServer:
        server = HttpServer(loop_thread.loop, app, log)
        server.websocket = WebSocketSettings(**settings)  # type: ignore[arg-type]
        server_side.setblocking(False)  # as a Listener hands it over
        server.accept(server_side, ("127.0.0.1", 40000))
        return server
    server = loop_thread.run(make)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n" % path + b"".join(
        b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in GOOD_UPGRADE.items())
        + b"\r\n")
    head = recv_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and head.endswith(b"\r\n\r\n"), head
    return server, log


def session_line(loop_thread: LoopThread, log: RecordingLog) -> dict | None:
    """The session's access line, once the connection is gone (None after TIMEOUT_S)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        lines = loop_thread.run(lambda: [line for line in log.rejected_lines
                                         if line.get("event_kind") == "websocket"])
        if lines:
            return lines[0]
        time.sleep(0.01)
    return None


@pytest.mark.parametrize(("last", "code"), [
    (encode_close(1000, "bye", mask=b"abcd"), 1000),  # the close handshake, by the client
    (encode_frame(OP_TEXT, b"unmasked"), 1002),  # a protocol error: we fail the connection
    (None, 1006),  # the peer's end of input (a half-close), without a Close
], ids=["close", "protocol-error", "eof"])
def test_a_peer_that_ends_the_session_but_does_not_read_is_dropped(
        loop_thread: LoopThread, socket_pair: tuple[socket.socket, socket.socket],
        last: bytes | None, code: int) -> None:
    server_side, sock = socket_pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    # no pings: they would end a session whose peer does not read, but they may be off
    _, log = ws_over_socketpair(loop_thread, server_side, sock, ping_interval_s=0.0,
                                close_timeout_s=0.2)
    # the echo of 128 KiB: the kernel takes a few KiB, the rest waits in the transport,
    # below its high-water mark (so no slow-consumer timer runs)
    sock.sendall(encode_frame(OP_BINARY, b"e" * (128 << 10), mask=b"abcd") + (last or b""))
    if last is None:
        sock.shutdown(socket.SHUT_WR)
    # never read: our Close cannot leave, yet the TCP connection must end, within
    # close_timeout_s (RFC 6455 7.1.1: the server closes it), not hang open for ever
    line = session_line(loop_thread, log)
    assert line is not None, "the connection is still open"
    assert line["close_code"] == code and line["closed_by"] == (
        "server" if code == 1002 else "client")


class Held(WebSocketHandler):
    """Blocks its pool thread on its first message until the test lets it go."""

    release = threading.Event()
    sessions: list[WebSocket] = []

    def on_open(self) -> None:
        self.sessions.append(self.ws)

    def on_message(self, data: str | bytes) -> None:
        self.release.wait(TIMEOUT_S)


def test_our_close_is_answered_while_reading_waits_for_the_handler(
        loop_thread: LoopThread, socket_pair: tuple[socket.socket, socket.socket]) -> None:
    """100 messages for a stuck handler: reading stops until it catches up. Our Close (the
    app's, or a stop's 1001) then needs the peer's answer all the same: what comes after it
    is not for the handler, so it is read -- not left unread until close_timeout_s."""
    server_side, sock = socket_pair
    Held.release.clear()
    Held.sessions.clear()
    try:
        server, log = ws_over_socketpair(loop_thread, server_side, sock, Held,
                                         ping_interval_s=0.0, close_timeout_s=60.0)
        sock.sendall(b"".join(encode_frame(OP_TEXT, b"m%d" % i, mask=b"abcd")
                              for i in range(100)))

        def messages_in() -> int:
            return sum(t.protocol.messages_in for t in server.connections  # type: ignore[union-attr]
                       if t.protocol is not None)
        assert wait_until(lambda: loop_thread.run(messages_in) == 100)  # 99 wait: held
        Held.sessions[0].close(4000, "enough")
        parser = WebSocketParser(client=True)
        events = parser.receive(recv_until(sock, b"enough"))
        assert repr(events) == repr([Close(4000, "enough")])
        sock.sendall(encode_close(4000, mask=b"abcd"))  # the answer, at once
        assert recv_all(sock) == b""  # the server closes (lingering: it shut down writing)
        sock.close()
        line = session_line(loop_thread, log)
        assert line is not None and line["close_code"] == 4000
        assert line["closed_by"] == "server"
    finally:
        Held.release.set()


PARSE_SLICE = 4 * 1024  # reactor.conn.ws's


def test_a_read_of_tiny_frames_lets_the_others_in_between(tmp_path: Path) -> None:
    """64 KiB of 7-byte frames (pings here; 1-byte messages or fragments alike) in one read
    were parsed in one pass: 9,000 frames, 25-80 ms of the loop that every other connection
    waited; a pass parses PARSE_SLICE bytes."""
    frame = encode_frame(OP_PING, b"x", mask=b"abcd")
    running = start_server(tmp_path)
    pongs_sent: list[int] = []

    def probe(request: Request) -> Response:  # inline: runs in the loop pass it arrives in
        sessions = [transport.protocol for transport in running.server.http.connections
                    if isinstance(transport.protocol, WebSocketConnection)]
        pongs_sent.append(sessions[0].bytes_out // 3)  # a pong of 1 byte is 3 bytes
        return Response(200)

    running.server.app.router.get("/probe", probe)
    count = 9000
    try:
        client = WsClient("127.0.0.1", running.port)
        with RawClient.to(running) as other:
            assert wait_until(lambda: on_loop(running, lambda: len(
                running.server.http.connections)) == 2)
            holding, release = threading.Event(), threading.Event()

            def hold() -> None:  # on the loop: both clients' bytes wait when it reads
                holding.set()
                release.wait(TIMEOUT_S)

            running.call(hold)
            assert holding.wait(TIMEOUT_S)
            client.sock.sendall(frame * count)
            other.send(request_bytes("GET", "/probe"))
            time.sleep(0.05)  # loopback has delivered them; the loop sees both in one select
            release.set()
            assert other.read_response().status == 200
        assert pongs_sent[0] <= 2 * PARSE_SLICE // len(frame) + 1
        received = 0  # and every ping is answered, in the passes after
        while received < 3 * count:
            received += len(client.sock.recv(1 << 20))
        client.sock.close()
    finally:
        running.stop()
