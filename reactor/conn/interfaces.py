"""The connection layer's declared seams: Transport (bytes to and from a peer) and Protocol.

A transport owns one socket and every call on it (recv, send, sendmsg, sendfile, shutdown,
close); a protocol turns the bytes into meaning (HTTP/1.1, later WebSocket) and never
touches the socket. A plain TCP transport and a TLS transport differ only in their I/O
primitives and the handshake, so a protocol cannot tell them apart. `set_protocol` hands the
byte stream to another protocol after a `101 Switching Protocols`, together with the bytes
that followed the request head.

mypy holds the concrete classes to these shapes (`conn/transport.py`, `conn/http.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

UNSENT_ALL = sys.maxsize
"""`unsent` of a `when_sent` callback whose bytes all were dropped (the transport had closed)."""


class StreamProtocol(Protocol):
    """What a transport calls on the protocol it carries (all on the loop thread)."""

    def connection_made(self, transport: Transport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: BaseException | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def write_blocked(self) -> None: ...
    def shutdown(self) -> None:
        """Graceful stop: finish what is in progress, then close."""


class PeekingProtocol(StreamProtocol, Protocol):
    """A step before a TLS handshake that reads a preamble (the PROXY header) by peeking, so
    the bytes after it stay in the socket for the handshake (`TlsTransport.start_preamble`).

    The transport never calls `data_received`: it peeks at most `peek_bytes` waiting bytes
    and passes them to `peeked`, which returns how many of them the step used; the transport
    takes exactly those off the socket before its next read.
    """

    @property
    def peek_bytes(self) -> int: ...
    def peeked(self, data: bytes) -> int: ...


class Transport(Protocol):
    """What a protocol may do with its connection (all on the loop thread)."""

    peer: tuple[str, int]
    last_write_progress: float

    @property
    def protocol(self) -> StreamProtocol | None: ...
    @property
    def extra(self) -> dict[str, Any]:
        """Facts about the connection beyond the peer (TLS version, cipher, SNI, ...)."""
    @property
    def writing_blocked(self) -> bool: ...
    @property
    def pending_bytes(self) -> int: ...
    def delivery(self) -> tuple[int, int] | None:
        """`(acked, queued)`: the bytes of ours the peer's TCP has acknowledged so far
        (Linux's TCP_INFO `tcpi_bytes_acked`) and those in the kernel's send queue not yet
        acknowledged (SIOCOUTQ); None where the socket cannot say."""
    @property
    def input_waiting(self) -> bool:
        """Bytes from the peer wait unread (in the kernel, or decrypted by TLS): they are
        on their way to the protocol, which has not seen them yet."""

    def write(self, data: bytes | memoryview) -> None: ...
    def try_write(self, data: bytes) -> bool:
        """Write `data`; True when all of it reached the kernel in this call (nothing was
        queued before it), else what is left is queued as by `write` (False)."""
    def write_many(self, *chunks: bytes | memoryview) -> None: ...
    def write_file(self, file: BinaryIO, offset: int, length: int) -> None: ...
    def when_sent(self, callback: Callable[..., Any], *args: Any) -> None:
        """`callback(*args, unsent)` once all written so far reached the kernel (`unsent`
        0), or once the connection died first (`unsent`: the bytes written since the
        previous marker that were dropped; `UNSENT_ALL` if it was closed already)."""
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def read_now(self) -> None:
        """Read what the socket holds now, even while reading is paused (graceful stop)."""
    def set_protocol(self, protocol: StreamProtocol, trailing_data: bytes = b"") -> None: ...
    def close(self, *, linger: bool = False) -> None: ...
    def abort(self) -> None: ...


class Sender(Protocol):
    """The transport's write primitives, as the write buffer uses them.

    Each sends what the socket takes now and returns the byte count; BlockingIOError when
    it takes nothing; any other OSError means the connection is broken. `more` says a file
    range follows the chunks: a partial segment may wait for it (Linux MSG_MORE).
    `send_file` returns 0 at the end of the file, as `os.sendfile` does.
    """

    def send_chunks(self, chunks: list[bytes | memoryview], more: bool = False) -> int: ...
    def send_file(self, file: BinaryIO, offset: int, count: int) -> int: ...
