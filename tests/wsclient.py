"""A small blocking WebSocket client for tests, built on reactor's own sans-IO protocol.

It masks what it sends, answers nothing by itself (a test decides whether to pong), and
returns the events the server sent.
"""

from __future__ import annotations

import base64
import os
import socket
import time

from reactor.proto.deflate import Deflate, negotiate_client
from reactor.proto.websocket import (
    OP_PONG,
    Close,
    Event,
    Message,
    MessageEncoder,
    Ping,
    WebSocketParser,
    accept_key,
    encode_frame,
)

TIMEOUT_S = 10.0


class HandshakeRefused(Exception):
    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"upgrade refused: {status}")
        self.status = status
        self.head = head


class WsClient:
    """One client connection: `send`, `recv` (next event), `close`."""

    def __init__(self, host: str, port: int, path: str = "/ws/echo", *,
                 deflate: bool = False, headers: dict[str, str] | None = None,
                 timeout: float = TIMEOUT_S, max_message_bytes: int = 64 << 20,
                 rcvbuf: int | None = None) -> None:
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:  # set before connect: the TCP window follows it (a slow link's receiver)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.read_bytes = 65536  # per recv; with read_pause_s, a slow reader
        self.read_pause_s = 0.0
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}",
                 "Sec-WebSocket-Version: 13"]
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; "
                         "client_max_window_bits")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        self.head = head
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            raise HandshakeRefused(status, head)
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        assert fields[b"sec-websocket-accept"] == accept_key(key)
        self.extensions = fields.get(b"sec-websocket-extensions")
        state = None
        if deflate and self.extensions:
            params = negotiate_client(self.extensions)
            state = Deflate(params, client=True)
        self.deflate = state
        self.parser = WebSocketParser(max_message_bytes=max_message_bytes, deflate=state,
                                      client=True)
        self.encoder = MessageEncoder(state, mask_source=lambda: os.urandom(4))
        self.events: list[Event] = []
        self.pings = 0
        if rest:
            self.events.extend(self.parser.receive(rest))

    def send(self, data: str | bytes, *, compress: bool = True) -> None:
        self.sock.sendall(self.encoder.message(data, compress=compress))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, opcode: int, payload: bytes, **kw: bool) -> bytes:
        """A masked frame for `send_raw`."""
        return encode_frame(opcode, payload, mask=os.urandom(4), **kw)

    def recv_event(self, timeout: float = TIMEOUT_S) -> Event | None:
        """The next event, or None when the server closed the TCP connection."""
        deadline = time.monotonic() + timeout
        while not self.events:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(self.read_bytes)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.events.extend(self.parser.receive(data))
            if self.read_pause_s:
                time.sleep(self.read_pause_s)
        return self.events.pop(0)

    def recv(self, *, pong: bool = True, timeout: float = TIMEOUT_S) -> Event | None:
        """The next message or Close, answering (and counting) pings on the way."""
        while True:
            event = self.recv_event(timeout)
            if isinstance(event, Ping):
                self.pings += 1
                if pong:
                    self.send_raw(self.frame(OP_PONG, event.payload))
                continue
            if event is None or isinstance(event, (Message, Close)) or not pong:
                return event

    def close(self, code: int = 1000, reason: str = "") -> Event | None:
        """Send Close and return the server's answer (its Close, or None)."""
        self.sock.sendall(self.encoder.close(code, reason))
        return self.recv()

    def is_closed_by_peer(self, timeout: float = TIMEOUT_S) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def shutdown(self) -> None:
        self.sock.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
