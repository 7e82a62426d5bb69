"""One transport per accepted socket: reads into its protocol, writes from a `WriteBuffer`.

Strategy: the transport is the only owner of the socket. `on_readable` does one `recv` and
hands the bytes to the protocol; writes made while the protocol handles those bytes are
batched and flushed once afterwards (pipelined responses leave in one `sendmsg`). Writes made
at other times (a pool result) go out at once. When unsent bytes pass the high-water mark the
protocol is told to pause, and told to resume below the low-water mark.
"""

from __future__ import annotations

import socket
import time
from typing import Any, BinaryIO, Protocol

from reactor.conn.writebuf import WriteBuffer
from reactor.loop import EventLoop

RECV_BYTES = 64 * 1024
HIGH_WATER_BYTES = 256 * 1024
LOW_WATER_BYTES = 64 * 1024
# After we are done writing, keep discarding what the peer still sends for this long before
# closing, so that unread input does not make the kernel reset our last response (nginx's
# lingering close).
LINGER_S = 2.0


class StreamProtocol(Protocol):
    def connection_made(self, transport: Transport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: BaseException | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def write_blocked(self) -> None: ...


class Transport:
    """A non-blocking TCP socket registered with the loop."""

    __slots__ = (
        "_batching", "_buffer", "_closed", "_closing", "_linger_timer", "_loop", "_protocol",
        "_reading", "_sock", "_write_paused", "_writing", "last_write_progress", "peer",
    )

    def __init__(self, loop: EventLoop, sock: socket.socket, peer: tuple[str, int]) -> None:
        self._loop = loop
        self._sock = sock
        self.peer = peer
        self._protocol: StreamProtocol | None = None
        self._buffer = WriteBuffer()
        self._reading = False
        self._writing = False
        self._batching = False
        self._write_paused = False
        self._closing = False
        self._closed = False
        self._linger_timer: Any = None
        self.last_write_progress = 0.0  # monotonic time a blocked write last moved

    def start(self, protocol: StreamProtocol) -> None:
        self._protocol = protocol
        protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    # ---- reading --------------------------------------------------------------------
    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            self._loop.add_reader(self._sock, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._abort(exc)
            return
        if self._closing:  # lingering: discard until EOF
            if not data:
                self._close_now(None)
            return
        self._batching = True
        try:
            if data:
                self._protocol.data_received(data)  # type: ignore[union-attr]
            else:
                self.pause_reading()
                self._protocol.eof_received()  # type: ignore[union-attr]
        finally:
            self._batching = False
        if self._buffer and not self._writing:
            self._flush()

    # ---- writing --------------------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        if self._closed or self._closing:
            return
        self._buffer.append(data)
        self._queued()

    def write_file(self, file: BinaryIO, offset: int, length: int) -> None:
        """Queue a file range, sent with `os.sendfile`; the transport closes the file."""
        if self._closed or self._closing:
            file.close()
            return
        self._buffer.append_file(file, offset, length)
        self._queued()

    def when_sent(self, callback: Any, *args: Any) -> None:
        """Run `callback(*args)` once everything written so far has reached the kernel.

        Also runs if the connection dies first (the response is still accounted for).
        """
        if self._closed:
            callback(*args)
            return
        self._buffer.append_marker(callback, *args)
        if not self._batching and not self._writing:
            self._flush()

    def write_many(self, *chunks: bytes | memoryview) -> None:
        """Queue several chunks; they leave together in one gather write when possible."""
        if self._closed or self._closing:
            return
        for chunk in chunks:
            self._buffer.append(chunk)
        self._queued()

    def _queued(self) -> None:
        """After output was queued: send now, or after the current batch, or when writable."""
        if self._batching or self._writing:
            # Sent after the current batch of input, or when the socket drains; meanwhile
            # the protocol must learn when too much is waiting.
            if not self._write_paused and self._buffer.pending_bytes > HIGH_WATER_BYTES:
                self._write_paused = True
                self._protocol.pause_writing()  # type: ignore[union-attr]
        else:
            self._flush()

    def _check_high_water(self) -> None:
        if not self._write_paused and self._buffer.pending_bytes > HIGH_WATER_BYTES:
            self._write_paused = True
            self._protocol.pause_writing()  # type: ignore[union-attr]

    @property
    def writing_blocked(self) -> bool:
        """True while output waits for the socket to become writable."""
        return self._writing

    @property
    def pending_bytes(self) -> int:
        return self._buffer.pending_bytes

    @property
    def sendfile_bytes(self) -> int:
        return self._buffer.sendfile_bytes

    def _flush(self) -> None:
        buffer = self._buffer
        try:
            done = buffer.send(self._sock)
        except OSError as exc:
            self._abort(exc)
            return
        if self._closed:
            return  # a marker closed us
        if done:
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self._sock)
            if self._write_paused:
                self._write_paused = False
                self._protocol.resume_writing()  # type: ignore[union-attr]
            if self._closing:
                self._finish_close()
            return
        if not self._writing:
            self._writing = True
            self.last_write_progress = time.monotonic()
            self._loop.add_writer(self._sock, self._on_writable)
            self._protocol.write_blocked()  # type: ignore[union-attr]
        self._check_high_water()

    def _on_writable(self) -> None:
        self.last_write_progress = time.monotonic()
        self._flush()
        if (self._write_paused and not self._closed
                and self._buffer.pending_bytes <= LOW_WATER_BYTES):
            self._write_paused = False
            self._protocol.resume_writing()  # type: ignore[union-attr]

    # ---- closing --------------------------------------------------------------------
    def close(self, *, linger: bool = False) -> None:
        """Close after the buffer drains. With `linger`, half-close and drain input first."""
        if self._closing or self._closed:
            return
        self._closing = True
        if linger:
            self._linger_timer = True  # marks "linger wanted" until the buffer drains
        if not self._buffer:
            self._finish_close()
        elif not self._writing and not self._batching:
            self._flush()

    def _finish_close(self) -> None:
        if self._linger_timer is True:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close_now(None)
                return
            self._linger_timer = self._loop.call_later(LINGER_S, self._close_now, None)
            self.resume_reading()
        else:
            self._close_now(None)

    def abort(self) -> None:
        """Close at once, dropping unsent output."""
        self._close_now(None)

    def _abort(self, exc: BaseException) -> None:
        self._close_now(exc)

    def _close_now(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        timer = self._linger_timer
        if timer is not None and timer is not True:
            timer.cancel()
        self._linger_timer = None
        self._loop.forget(self._sock)
        self._reading = self._writing = False
        self._buffer.clear()
        try:
            self._sock.close()
        finally:
            protocol, self._protocol = self._protocol, None
            if protocol is not None:
                protocol.connection_lost(exc)
