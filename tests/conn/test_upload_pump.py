"""UploadPump on a real EventLoop and pool: pieces fed while a write runs are coalesced into
one write, and the backlog (wire bytes, framing included) throttles and releases reading."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reactor.app.types import Response, Upload
from reactor.conn.upload import BACKLOG_HIGH_BYTES, BACKLOG_LOW_BYTES, UploadPump
from reactor.loop import EventLoop

WAIT_S = 10.0


class ListUpload(Upload):
    """Keeps every chunk `write` gets; the first write blocks until `release` is set."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.first_write = threading.Event()
        self.release = threading.Event()

    def write(self, chunk: bytes) -> None:
        self.writes.append(chunk)
        if len(self.writes) == 1:
            self.first_write.set()
            assert self.release.wait(WAIT_S)

    def finish(self) -> Response:
        return Response(201)


class Harness:
    """A pump on a loop running in a thread; everything touching the pump runs on the loop."""

    def __init__(self, loop: EventLoop, upload: ListUpload) -> None:
        self.loop = loop
        self.upload = upload
        self.finished = threading.Event()
        self.throttles: list[bool] = []
        self.answer: Response | None = None
        self.pump: UploadPump = self.on_loop(self._make)

    def _make(self) -> UploadPump:
        return UploadPump(self.loop, self.upload, started=lambda: None,
                          refused=self._answered, finished=self._answered,
                          failed=lambda exc: None, throttle=self.throttles.append)

    def _answered(self, response: Response) -> None:
        self.answer = response
        self.finished.set()

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(WAIT_S)
        return box[0]


@pytest.fixture
def harness() -> Iterator[Harness]:
    loop = EventLoop(pool_threads=2)
    thread = threading.Thread(target=loop.run_forever, name="pump-test-loop", daemon=True)
    thread.start()
    upload = ListUpload()
    try:
        yield Harness(loop, upload)
    finally:
        upload.release.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


def test_pieces_fed_while_a_write_runs_become_one_write(harness: Harness) -> None:
    pump = harness.pump
    harness.on_loop(lambda: pump.feed(b"first"))
    assert harness.upload.first_write.wait(WAIT_S)
    pieces = [b"%d," % i for i in range(5000)]

    def feed_all() -> None:
        for piece in pieces:
            pump.feed(piece)
        pump.end()

    harness.on_loop(feed_all)
    harness.upload.release.set()
    assert harness.finished.wait(WAIT_S)
    assert harness.answer is not None and harness.answer.status == 201
    assert harness.upload.writes == [b"first", b"".join(pieces)]
    assert harness.on_loop(lambda: pump.backlog) == 0


def test_backlog_counts_wire_bytes_and_throttles_at_the_marks(harness: Harness) -> None:
    pump = harness.pump
    harness.on_loop(lambda: pump.feed(b"a"))
    assert harness.upload.first_write.wait(WAIT_S)
    # 1-byte pieces that took 6 bytes each on the wire ("1\r\na\r\n"): the payload alone
    # (200,000 bytes) is far below the high mark, what the pump holds is not.
    pieces = 200_000

    def feed_many() -> tuple[bool, int]:
        for _ in range(pieces):
            pump.feed(b"b", wire_bytes=6)
        return pump.throttled, pump.backlog

    throttled, backlog = harness.on_loop(feed_many)
    assert throttled
    assert backlog > BACKLOG_HIGH_BYTES
    assert harness.throttles == [True]
    harness.upload.release.set()  # the blocked write returns, then the batch is written
    harness.on_loop(pump.end)
    assert harness.finished.wait(WAIT_S)
    assert harness.throttles == [True, False]
    assert harness.upload.writes == [b"a", b"b" * pieces]
    assert harness.on_loop(lambda: pump.backlog) < BACKLOG_LOW_BYTES
