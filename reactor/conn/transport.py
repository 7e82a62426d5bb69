"""The plain TCP transport: one per accepted socket, reads into its protocol, writes from a
`WriteBuffer`.

Strategy: the transport is the only owner of the socket, and every call on the socket is one
of four primitives (`_recv`, `send_chunks`, `send_file`, `_shutdown_write`) that a TLS
transport overrides, with its handshake, and nothing else. `_on_readable` does one read and
hands the bytes to the protocol; writes made while the protocol handles those bytes are
batched and flushed once afterwards (pipelined responses leave in one `sendmsg`). Writes made
at other times (a pool result) go out at once, and so does a `try_write` with nothing queued
before it (the last answer of a read: no buffer entry, no marker). When unsent bytes pass the
high-water mark the protocol is told to pause, and told to resume below the low-water mark.
A head followed by a file range is sent with MSG_MORE, so it leaves in one segment with the
file's first bytes from the sendfile call itself (a transport whose file bytes come later,
TLS, corks the socket instead: `CORK_FILES`). `set_protocol` swaps the protocol in place
(after a 101), feeding the new one the bytes that were already read.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import termios
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from reactor.conn.interfaces import UNSENT_ALL, StreamProtocol
from reactor.conn.writebuf import WriteBuffer
from reactor.loop import EventLoop, TimerHandle

RECV_BYTES = 64 * 1024
HIGH_WATER_BYTES = 256 * 1024
LOW_WATER_BYTES = 64 * 1024
# After we are done writing, keep discarding what the peer still sends for this long before
# closing, so that unread input does not make the kernel reset our last response (nginx's
# lingering close).
LINGER_S = 2.0
_LINGER_WANTED = "linger"  # `_linger` before the buffer drained: linger once it has
# Linux: "more data follows", a per-call TCP_CORK. Elsewhere 0, and a head leaves on its own.
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
# struct tcp_info (linux/tcp.h): the u64 tcpi_bytes_acked at offset 120, since Linux 4.1.
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_BYTES_ACKED = 120
_TCP_INFO_LENGTH = _BYTES_ACKED + 8
_INT_BUFFER = bytes(4)  # SIOCOUTQ (= TIOCOUTQ) answers an int


class SocketTransport:
    """A non-blocking TCP (or unix) socket registered with the loop."""

    # Cork the socket while a file range is queued (nginx's tcp_nopush). Not needed here:
    # the sendfile call follows the head at once, and MSG_MORE on the head does the same
    # with two syscalls fewer (and, measured on loopback, less TCP work per response).
    CORK_FILES = False

    __slots__ = (
        "_batching", "_buffer", "_closed", "_closing", "_corked", "_linger", "_loop",
        "_on_closed",
        "_protocol", "_reading", "_sock", "_write_paused", "_writing", "extra",
        "last_write_progress", "peer",
    )

    def __init__(self, loop: EventLoop, sock: socket.socket, peer: tuple[str, int], *,
                 on_closed: Callable[[SocketTransport], None] | None = None) -> None:
        self._loop = loop
        self._sock = sock
        self.peer = peer
        self.extra: dict[str, Any] = {}
        self._on_closed = on_closed
        self._protocol: StreamProtocol | None = None
        self._buffer = WriteBuffer()
        self._reading = False
        self._writing = False
        self._batching = False
        self._write_paused = False
        self._closing = False
        self._closed = False
        # TCP_CORK while a file range is queued (with CORK_FILES), None once the socket
        # refused it (TLS over a unix socket): see `_flush`.
        self._corked: bool | None = False
        self._linger: TimerHandle | str | None = None
        self.last_write_progress = 0.0  # monotonic time a blocked write last moved

    @property
    def protocol(self) -> StreamProtocol | None:
        return self._protocol

    def start(self, protocol: StreamProtocol) -> None:
        self._protocol = protocol
        protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    def set_protocol(self, protocol: StreamProtocol, trailing_data: bytes = b"") -> None:
        """Hand the connection to `protocol` (after a 101): it gets `connection_made`, then
        `trailing_data`, the bytes that followed the request head, as its first input."""
        if self._closed:
            return
        self._protocol = protocol
        protocol.connection_made(self)
        if trailing_data and self._protocol is protocol and not self._closing:
            protocol.data_received(trailing_data)
        if not self._closing:
            self.resume_reading()

    # ---- socket primitives (a TLS transport overrides these; above them only `try_write`,
    # which must not bypass its buffer, and `input_waiting`, which counts decrypted records) --
    def _recv(self) -> bytes:
        """Up to RECV_BYTES from the socket; b"" at EOF. BlockingIOError when none wait."""
        return self._sock.recv(RECV_BYTES)

    def send_chunks(self, chunks: list[bytes | memoryview], more: bool = False) -> int:
        if more:  # a file range follows: its sendfile pushes the head with the first bytes
            return self._sock.sendmsg(chunks, (), _MSG_MORE)
        return self._sock.send(chunks[0]) if len(chunks) == 1 else self._sock.sendmsg(chunks)

    def send_file(self, file: BinaryIO, offset: int, count: int) -> int:
        return os.sendfile(self._sock.fileno(), file.fileno(), offset, count)

    def _shutdown_write(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def _cork(self, on: bool) -> None:
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)
        except OSError:
            self._corked = None  # not TCP: never again
        else:
            self._corked = on

    # ---- reading --------------------------------------------------------------------
    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            self._loop.add_reader(self._sock, self._on_readable)

    def read_now(self) -> None:
        """One read attempt now, even while paused: a graceful stop answers what was sent."""
        if not self._closing:
            self._on_readable()

    def _on_readable(self) -> None:
        try:
            data = self._recv()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close_now(exc)
            return
        if self._closing:  # input is discarded: the answer drains, or we linger after it
            if not data:
                if isinstance(self._linger, TimerHandle):
                    self._close_now(None)  # lingering after our half-close: done
                else:
                    # The peer half-closed while our answer still drains: its end of input,
                    # not an abort (RFC 9112 9.6); closing here would cut the answer short.
                    self.pause_reading()
            return
        protocol = self._protocol
        assert protocol is not None
        self._batching = True
        try:
            if data:
                protocol.data_received(data)
            else:
                self.pause_reading()
                protocol.eof_received()
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

    def try_write(self, data: bytes) -> bool:
        """`write`, sent at once when nothing waits before it: True when it all reached the
        kernel in this call (the caller can account for it now, no marker needed)."""
        if self._buffer or self._writing or self._closing or not data:
            self.write(data)
            return False
        try:
            sent = self.send_chunks([data])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._close_now(exc)
            return False
        if sent == len(data):
            return True
        self.write(memoryview(data)[sent:] if sent else data)
        return False

    def write_file(self, file: BinaryIO, offset: int, length: int) -> None:
        """Queue a file range, sent with `os.sendfile`; the transport closes the file."""
        if self._closed or self._closing:
            file.close()
            return
        self._buffer.append_file(file, offset, length)
        self._queued()

    def when_sent(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args, unsent)` once everything written so far has reached the
        kernel (`unsent` 0). Also runs if the connection dies first (the response is still
        accounted for): `unsent` is then how much of what was written since the previous
        marker was dropped (`UNSENT_ALL` when the transport was closed already).
        """
        if self._closed:
            callback(*args, UNSENT_ALL)
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
        if self._writing:
            # Sent when the socket drains; meanwhile the protocol must learn when too much
            # is waiting.
            self._check_high_water()
        elif not self._batching or self._buffer.pending_bytes > HIGH_WATER_BYTES:
            # Not in a batch of input, or the batch has queued more than the mark (a large
            # file, many pipelined answers): send what the socket takes now, and pause the
            # protocol only for what it did not take.
            self._flush()

    def _check_high_water(self) -> None:
        if not self._write_paused and self._buffer.pending_bytes > HIGH_WATER_BYTES:
            self._write_paused = True
            if self._protocol is not None:
                self._protocol.pause_writing()

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

    @property
    def input_waiting(self) -> bool:
        try:
            unread = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, _INT_BUFFER)
        except (OSError, ValueError):  # closed
            return False
        return int.from_bytes(unread, sys.byteorder, signed=True) > 0

    def delivery(self) -> tuple[int, int] | None:
        sock = self._sock
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LENGTH)
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, _INT_BUFFER)
        except (OSError, ValueError):  # not TCP (a socketpair), or closed
            return None
        if len(info) < _TCP_INFO_LENGTH:  # a kernel before 4.1 has no tcpi_bytes_acked
            return None
        return (int.from_bytes(info[_BYTES_ACKED:_TCP_INFO_LENGTH], sys.byteorder),
                int.from_bytes(queued, sys.byteorder, signed=True))

    def _flush(self) -> None:
        buffer = self._buffer
        if buffer.files and self.CORK_FILES and self._corked is False:
            # A file is going out and its bytes come later than the head (TLS: read in the
            # pool): hold partial segments until it is all queued, so the head does not
            # leave alone and the kernel sends full segments (nginx's tcp_nopush). Uncorked
            # below once the buffer drains, which pushes the last partial segment at once.
            self._cork(True)
        try:
            done = buffer.send(self)
        except OSError as exc:
            self._close_now(exc)
            return
        if self._closed:
            return  # a marker closed us
        if done:
            if self._corked:
                self._cork(False)
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self._sock)
            if self._write_paused:
                self._write_paused = False
                if self._protocol is not None:
                    self._protocol.resume_writing()
            if self._closing:
                self._finish_close()
            return
        if not self._writing:
            self._writing = True
            self.last_write_progress = time.monotonic()
            self._loop.add_writer(self._sock, self._on_writable)
            if self._protocol is not None:
                self._protocol.write_blocked()
        self._check_high_water()

    def _on_writable(self) -> None:
        self.last_write_progress = time.monotonic()
        self._flush()
        if (self._write_paused and not self._closed
                and self._buffer.pending_bytes <= LOW_WATER_BYTES):
            self._write_paused = False
            if self._protocol is not None:
                self._protocol.resume_writing()

    # ---- closing --------------------------------------------------------------------
    def close(self, *, linger: bool = False) -> None:
        """Close after the buffer drains. With `linger`, half-close and drain input first."""
        if self._closing or self._closed:
            return
        self._closing = True
        if linger:
            self._linger = _LINGER_WANTED
        if not self._buffer:
            self._finish_close()
        elif not self._writing and not self._batching:
            self._flush()

    def _finish_close(self) -> None:
        if self._linger == _LINGER_WANTED:
            try:
                self._shutdown_write()
            except OSError:
                self._close_now(None)
                return
            self._linger = self._loop.call_later(LINGER_S, self._close_now, None)
            self.resume_reading()
        else:
            self._close_now(None)

    def abort(self) -> None:
        """Close at once, dropping unsent output."""
        self._close_now(None)

    def _close_now(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        if isinstance(self._linger, TimerHandle):
            self._linger.cancel()
        self._linger = None
        self._loop.forget(self._sock)
        self._reading = self._writing = False
        self._buffer.clear()
        try:
            self._sock.close()
        finally:
            protocol, self._protocol = self._protocol, None
            try:
                if protocol is not None:
                    protocol.connection_lost(exc)
            finally:
                if self._on_closed is not None:
                    self._on_closed(self)
