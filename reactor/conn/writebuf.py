"""The write buffer: queued bytes, file ranges and completion markers, sent in order.

Strategy: entries leave in the order they were queued. Consecutive byte chunks go out in one
gather write (`sendmsg`, no joining copy), markers between them included (pipelined answers,
each followed by its log marker, leave together); a file range goes out with `os.sendfile`
(through the transport's `Sender` primitives: the buffer itself never touches a socket), and
the bytes before it are sent with `more` (a head shares a segment with the file's first
bytes instead of leaving alone: see SocketTransport.send_chunks); a marker is a callback
that runs once everything queued before it has reached the kernel (the connection logs a
response there, or closes). A partial send keeps the unsent tail as a memoryview of the
original chunk, so nothing is copied twice. The queue itself exists only while something
waits: an idle connection holds none.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, BinaryIO

from reactor.app.types import FileTruncated
from reactor.conn.interfaces import Sender

# Linux IOV_MAX is 1024; stay well below it and below what one sendmsg usefully takes.
_MAX_IOVECS = 64
_SENDFILE_CHUNK = 4 * 1024 * 1024


class FileRange:
    """`length` bytes of `file` from `offset`; the buffer closes the file when done or dropped."""

    __slots__ = ("file", "length", "offset")

    def __init__(self, file: BinaryIO, offset: int, length: int) -> None:
        self.file = file
        self.offset = offset
        self.length = length


class Marker:
    """A callback run when every entry queued before it has been sent: `callback(*args,
    unsent)`, where `unsent` counts the bytes queued between the previous marker and this
    one that never reached the kernel (0, unless the buffer was dropped: see `clear`)."""

    __slots__ = ("args", "callback")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args


Entry = bytes | memoryview | FileRange | Marker


class WriteBuffer:
    """Pending output of one connection. `pending_bytes` counts queued bytes and file ranges.

    File ranges count too: a client that pipelines requests for files and never reads must
    hit the high-water mark like any other, or it could pin one open file per request.
    """

    __slots__ = ("_entries", "files", "pending_bytes", "sendfile_bytes")

    def __init__(self) -> None:
        # Made on the first write and dropped once drained: an idle keep-alive connection
        # holds no deque (~760 bytes with its first block; see bench idle10k).
        self._entries: collections.deque[Entry] | None = None
        self.pending_bytes = 0
        self.files = 0  # file ranges queued
        self.sendfile_bytes = 0  # lifetime total sent through os.sendfile (observability)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def _queue(self) -> collections.deque[Entry]:
        entries = self._entries
        if entries is None:
            entries = self._entries = collections.deque()
        return entries

    def append(self, data: bytes | memoryview) -> None:
        if data:
            (self._entries if self._entries is not None else self._queue()).append(data)
            self.pending_bytes += len(data)

    def append_file(self, file: BinaryIO, offset: int, length: int) -> None:
        if length > 0:
            self._queue().append(FileRange(file, offset, length))
            self.pending_bytes += length
            self.files += 1
        else:
            file.close()

    def append_marker(self, callback: Callable[..., Any], *args: Any) -> None:
        (self._entries if self._entries is not None else self._queue()).append(
            Marker(callback, args))

    def send(self, sender: Sender) -> bool:
        """Send as much as the socket takes now. True when the buffer is empty afterwards.

        Raises the socket's OSError (other than EAGAIN) for the caller to treat as a reset.
        Markers that become due run here, in order.
        """
        entries = self._entries
        if entries is None:
            return True
        while entries:
            head = entries[0]
            if isinstance(head, Marker):
                entries.popleft()
                head.callback(*head.args, 0)
            elif isinstance(head, FileRange):
                if not self._send_file(sender, head):
                    return False
            elif not self._send_bytes(sender):
                return False
        if self._entries is entries:
            self._entries = None  # drained: an idle connection holds no deque
        return True

    def _send_bytes(self, sender: Sender) -> bool:
        """One gather write of the byte chunks at the front, markers between them skipped
        (pipelined responses, each followed by its log marker, leave in one `sendmsg`); the
        markers run once the bytes before them are sent."""
        entries = self._entries
        assert entries is not None  # `send` calls this for the bytes at its front
        chunks: list[bytes | memoryview] = []
        file_next = False
        for entry in entries:
            if type(entry) is Marker:
                continue
            if type(entry) is FileRange:
                file_next = True  # a head before its file: held for the file's first bytes
                break
            if len(chunks) == _MAX_IOVECS:
                break
            chunks.append(entry)  # type: ignore[arg-type]  # bytes or memoryview here
        try:
            sent = sender.send_chunks(chunks, file_next)
        except (BlockingIOError, InterruptedError):
            return False
        self.pending_bytes -= sent
        unsent_chunks = len(chunks)
        while entries:
            entry = entries[0]
            if type(entry) is Marker:
                entries.popleft()
                entry.callback(*entry.args, 0)
                if entries is not self._entries:
                    return True  # the callback closed the connection (the buffer was cleared)
                continue
            if not unsent_chunks or type(entry) is FileRange:
                break  # the rest goes in the next write
            size = len(entry)  # type: ignore[arg-type]
            if sent < size:
                if sent:
                    entries[0] = memoryview(entry)[sent:]  # type: ignore[arg-type]
                return False
            entries.popleft()
            sent -= size
            unsent_chunks -= 1
        return True

    def _send_file(self, sender: Sender, rng: FileRange) -> bool:
        try:
            sent = sender.send_file(rng.file, rng.offset, min(rng.length, _SENDFILE_CHUNK))
        except (BlockingIOError, InterruptedError):
            return False
        if sent == 0:  # the file shrank under us: we cannot honour Content-Length
            raise FileTruncated(rng.length)
        self.sendfile_bytes += sent
        self.pending_bytes -= sent
        rng.offset += sent
        rng.length -= sent
        if rng.length:
            return sent >= _SENDFILE_CHUNK  # a short send means the socket is full
        entries = self._entries
        assert entries is not None  # `send` calls this for the entry at its front
        entries.popleft()
        self.files -= 1
        rng.file.close()
        return True

    def clear(self) -> None:
        """Drop everything unsent (the connection is gone): close files, still run markers.

        Markers run so that every response is accounted for (logged) even when the peer
        vanished before receiving it; their callbacks see a closed transport, and learn how
        many of the bytes before them were dropped (the access log's `bytes_out` is what
        was sent, as nginx's `$bytes_sent`).
        """
        entries, self._entries = self._entries, None
        self.pending_bytes = 0
        self.files = 0
        if entries is None:
            return
        dropped = 0
        for entry in entries:
            if isinstance(entry, FileRange):
                dropped += entry.length
                entry.file.close()
            elif isinstance(entry, Marker):
                entry.callback(*entry.args, dropped)
                dropped = 0
            else:
                dropped += len(entry)
        entries.clear()  # a `send` this interrupted (a marker closed us) must stop there
