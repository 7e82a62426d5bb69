"""Connection-layer test tools: a real EventLoop on a thread, socketpairs, a recording log."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reactor.conn.shared import AccessRecord
from reactor.loop import EventLoop

TIMEOUT_S = 10.0


class LoopThread:
    """An EventLoop running on its own thread; `run(fn)` executes fn there and returns."""

    def __init__(self) -> None:
        self.loop = EventLoop(pool_threads=2)
        self.errors: list[tuple[str, BaseException]] = []
        self.loop.set_exception_handler(lambda context, exc: self.errors.append((context, exc)))
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        done: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()

        def call() -> None:
            try:
                done.put((fn(*args), None))
            except BaseException as exc:
                done.put((None, exc))

        self.loop.call_soon_threadsafe(call)
        result, error = done.get(timeout=TIMEOUT_S)
        if error is not None:
            raise error
        return result

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT_S)
        self.loop.close()


class RecordingLog:
    """A `RequestLog` that keeps what it is told (the connection's only view of logging)."""

    def __init__(self) -> None:
        self.requests: list[AccessRecord] = []
        self.rejected_lines: list[dict[str, Any]] = []
        self.errors: list[tuple[str, BaseException | None, dict[str, Any]]] = []

    def request(self, record: AccessRecord) -> None:
        self.requests.append(record)

    def rejected(self, fields: dict[str, Any]) -> None:
        self.rejected_lines.append(fields)

    def error(self, event: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        self.errors.append((event, exc, fields))


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.close()
    assert not running.errors, f"errors escaped to the loop: {running.errors}"


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side); the client side blocks with a timeout."""
    server_side, client_side = socket.socketpair()
    server_side.setblocking(False)
    client_side.settimeout(TIMEOUT_S)
    yield server_side, client_side
    client_side.close()
    server_side.close()


def recv_until(sock: socket.socket, marker: bytes, limit: int = 1 << 24) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        assert len(data) < limit
    return data


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the peer closes."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
