"""WriteBuffer over a real socketpair: order, gather writes, partial sends, files, markers."""

from __future__ import annotations

import os
import socket
from typing import BinaryIO

from reactor.app.types import FileTruncated
from reactor.conn.writebuf import WriteBuffer


class SocketSender:
    """The two write primitives over a real socket, counting the calls made."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls: list[tuple[str, int]] = []

    def send_chunks(self, chunks: list[bytes | memoryview], more: bool = False) -> int:
        self.calls.append(("chunks+more" if more else "chunks", len(chunks)))
        return self.sock.sendmsg(chunks, (), socket.MSG_MORE if more else 0)

    def send_file(self, file: BinaryIO, offset: int, count: int) -> int:
        self.calls.append(("file", count))
        return os.sendfile(self.sock.fileno(), file.fileno(), offset, count)


def drain(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(1 << 20)
    return data


def test_consecutive_chunks_leave_in_one_gather_write(socket_pair) -> None:
    server_side, client = socket_pair
    sender = SocketSender(server_side)
    buffer = WriteBuffer()
    for chunk in (b"a", b"bb", b"ccc"):
        buffer.append(chunk)
    assert buffer.pending_bytes == 6
    assert buffer.send(sender) and not buffer
    assert sender.calls == [("chunks", 3)]
    assert drain(client, 6) == b"abbccc"


def test_a_partial_send_keeps_the_tail_without_copying_the_head(socket_pair) -> None:
    server_side, client = socket_pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender = SocketSender(server_side)
    buffer = WriteBuffer()
    big = os.urandom(1 << 20)
    buffer.append(big)
    assert not buffer.send(sender)  # the socket took part of it
    assert 0 < buffer.pending_bytes < len(big)
    received = b""
    while buffer:
        received += client.recv(1 << 20)
        buffer.send(sender)
    received += drain(client, len(big) - len(received))
    assert received == big and buffer.pending_bytes == 0


def test_files_and_markers_keep_their_place_in_line(socket_pair, tmp_path) -> None:
    server_side, client = socket_pair
    path = tmp_path / "f"
    path.write_bytes(b"FILE")
    sender = SocketSender(server_side)
    buffer = WriteBuffer()
    seen: list[str] = []
    buffer.append(b"head:")
    buffer.append_marker(lambda label, unsent: seen.append(label), "head sent")
    buffer.append_file(path.open("rb"), 0, 4)
    buffer.append(b":tail")
    buffer.append_marker(lambda label, unsent: seen.append(label), "all sent")
    assert buffer.pending_bytes == 5 + 4 + 5
    assert buffer.send(sender)
    assert drain(client, 14) == b"head:FILE:tail"
    assert seen == ["head sent", "all sent"]
    # the head is sent as "more follows" (it waits for the file's first bytes), the tail not
    assert [kind for kind, _ in sender.calls] == ["chunks+more", "file", "chunks"]
    assert buffer.sendfile_bytes == 4


def test_clear_closes_files_and_still_runs_markers(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    file = path.open("rb")
    buffer = WriteBuffer()
    seen: list[str] = []
    dropped: list[int] = []
    buffer.append(b"never sent")
    buffer.append_file(file, 0, 10)
    buffer.append_marker(lambda label, unsent: (seen.append(label), dropped.append(unsent)),
                         "accounted for")
    buffer.append(b"later")
    buffer.append_marker(lambda unsent: dropped.append(unsent))
    buffer.clear()
    assert file.closed and seen == ["accounted for"] and buffer.pending_bytes == 0
    assert dropped == [10 + 10, 5]  # each marker learns what was dropped since the last


def test_a_file_that_shrank_is_a_broken_connection(socket_pair, tmp_path) -> None:
    server_side, _client = socket_pair
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    buffer = WriteBuffer()
    buffer.append_file(path.open("rb"), 0, 100)  # more than the file holds
    try:
        while not buffer.send(SocketSender(server_side)):
            pass
    except FileTruncated as exc:
        assert exc.missing == 90 and "90 bytes short" in str(exc)
    else:
        raise AssertionError("a short file must not end the response silently")


class ShortSender(SocketSender):
    """A socket that takes at most `room` bytes per call, as a full send buffer does."""

    def __init__(self, sock: socket.socket, room: int) -> None:
        super().__init__(sock)
        self.room = room

    def send_chunks(self, chunks: list[bytes | memoryview], more: bool = False) -> int:
        self.calls.append(("chunks", len(chunks)))
        return self.sock.send(b"".join(chunks)[: self.room])


def test_pipelined_answers_leave_in_one_gather_write_past_their_markers(socket_pair) -> None:
    server_side, client = socket_pair
    sender = SocketSender(server_side)
    buffer = WriteBuffer()
    seen: list[str] = []
    for answer in (b"one;", b"two;", b"three;"):
        buffer.append(answer)
        buffer.append_marker(lambda label, unsent: seen.append(label), answer.decode())
    assert buffer.send(sender) and not buffer
    assert sender.calls == [("chunks", 3)]  # one sendmsg, not one per answer
    assert seen == ["one;", "two;", "three;"]
    assert drain(client, 14) == b"one;two;three;"


def test_a_partial_gather_write_runs_only_the_markers_it_passed(socket_pair) -> None:
    server_side, client = socket_pair
    buffer = WriteBuffer()
    seen: list[str] = []
    for answer in (b"aaaa", b"bbbb", b"cccc"):
        buffer.append(answer)
        buffer.append_marker(lambda label, unsent: seen.append(label), answer[:1].decode())
    assert not buffer.send(ShortSender(server_side, 6))  # all of a, half of b
    assert seen == ["a"] and buffer.pending_bytes == 6
    assert buffer.send(SocketSender(server_side))
    assert seen == ["a", "b", "c"]
    assert drain(client, 12) == b"aaaabbbbcccc"


def test_a_marker_that_clears_the_buffer_ends_the_send(socket_pair) -> None:
    server_side, client = socket_pair
    sender = ShortSender(server_side, 5)
    buffer = WriteBuffer()
    seen: list[str] = []
    buffer.append(b"first")
    buffer.append_marker(lambda unsent: (seen.append("closing"), buffer.clear()))  # a close
    buffer.append(b"second")
    buffer.append_marker(lambda unsent: seen.append(f"second accounted for, {unsent} unsent"))
    assert buffer.send(sender)  # nothing left to send: the rest was dropped
    assert sender.calls == [("chunks", 2)]
    assert seen == ["closing", "second accounted for, 6 unsent"]  # each marker ran once
    assert not buffer and buffer.pending_bytes == 0 and buffer.files == 0
    client.setblocking(False)
    assert client.recv(100) == b"first"
