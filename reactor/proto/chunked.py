"""Chunked request bodies (RFC 9112 7.1): size lines, data, CRLFs, the last chunk, trailers.

Strategy: ``RequestParser`` holds one ``ChunkedReader`` and hands it its receive buffer while a
chunked body is read: ``read(buf, pos)`` returns the next event and leaves the consumed offset
in ``pos``. One call decodes every chunk the buffer holds in a tight loop -- ``find`` the size
line's CRLF, look the line up in a small cache of sizes already validated, slice the data,
check the CRLF -- and returns all that payload as ONE ``Data`` (the pieces joined). A flood of
1-byte chunks (6 wire bytes per payload byte) so costs one event per read, not one per chunk,
and whoever consumes the body sees a few large pieces. Data is handed out as it arrives, never
waiting for a whole chunk. The running total of chunk sizes is checked against the body limit
when each size line is read, so an oversized body is refused before its bytes arrive.

Errors: the earliest offending byte names the error, however the input was split (see
``headers.first_offence``). When bad bytes follow payload decoded in the same call, the call
returns that payload and stops in front of them; the next call reaches them and raises, just as
if the bytes had come one by one.
"""

from __future__ import annotations

import re

from reactor.proto.errors import RemoteProtocolError
from reactor.proto.events import END_OF_MESSAGE, NEED_DATA, Data, EndOfMessage, Event, RequestHead
from reactor.proto.headers import (
    BLOCK_CACHE,
    HEX_CHARS,
    MAX_CHUNK_SIZE_DIGITS,
    TOKEN_CHARS,
    first_offence,
    parse_header_block,
)

__all__ = ["MAX_CHUNK_LINE_BYTES", "ChunkedReader"]

# A chunk-size line (size and extensions) longer than this is refused: extensions are skipped,
# and a peer streaming an endless one must not make us buffer it.
MAX_CHUNK_LINE_BYTES = 4096
_LINE_WINDOW = MAX_CHUNK_LINE_BYTES + 2  # the line and its CRLF

# Reader states.
_SIZE = 0  # expecting a chunk-size line
_DATA = 1  # inside chunk data, _remaining bytes to go
_END = 2  # expecting the CRLF after chunk data
_TRAILERS = 3  # after the last chunk: trailer fields, then CRLF

# Byte -> its value as a hex digit, -1 if it is not one: a one-digit size line needs no slice.
_HEX_DIGIT = [-1] * 256
for _char in HEX_CHARS:
    _HEX_DIGIT[_char] = int(bytes((_char,)), 16)
del _char

# Size line (bytes, no extensions) -> chunk size. Clients repeat their chunk sizes, so a hit
# skips validating and converting the hex digits. Only valid lines of at most 16 bytes go in
# and the mapping is deterministic, so an entry cannot be poisoned; bounded in entries.
_SIZES: dict[bytes | bytearray, int] = {}
_SIZES_MAX = 256

# RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-name = token, chunk-ext-val = token / quoted-string (RFC 9110 5.6.4). Trailing
# whitespace is tolerated. Compiled once; only lines with a ";" reach it.
_TOKEN = b"[" + b"".join(re.escape(bytes((char,))) for char in TOKEN_CHARS) + b"]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + b"|" + _QUOTED + rb"))?)+"
    rb"[ \t]*"
)


class ChunkedReader:
    """Decodes one chunked body at a time out of a buffer the parser owns."""

    __slots__ = (
        "_field_budget",
        "_head",
        "_max_body",
        "_remaining",
        "_searched",
        "_section_budget",
        "_state",
        "_total",
        "pos",
    )

    def __init__(self) -> None:
        self.pos = 0  # after read(): the first byte it did not consume
        self._state = _SIZE
        self._remaining = 0
        self._total = 0  # sum of the chunk sizes so far
        self._max_body = 0
        self._head: RequestHead | None = None  # for the 413 error, so the caller can log it
        self._section_budget = 0  # bytes the trailer section may take (head bytes count)
        self._field_budget = 0  # trailer fields allowed (head fields count)
        self._searched = 0  # trailers: bytes after their start already searched for CRLFCRLF

    def start(
        self, head: RequestHead, max_body: int, section_budget: int, field_budget: int
    ) -> None:
        """Begin the body of ``head``; the trailers get what the head left of the limits."""
        self._state = _SIZE
        self._total = 0
        self._max_body = max_body
        self._head = head
        self._section_budget = section_budget
        self._field_budget = field_budget

    def read(self, buf: bytes | bytearray, pos: int) -> Event:
        """Data (everything decodable from ``buf[pos:]``), EndOfMessage or NEED_DATA."""
        state = self._state
        if state == _TRAILERS:
            return self._read_trailers(buf, pos)
        size = len(buf)
        total = self._total
        pieces: list[bytes | bytearray] = []
        try:
            if state != _SIZE:  # finish the chunk the last read stopped in
                end = pos + self._remaining if state == _DATA else pos
                if end > size:
                    if pos < size:
                        pieces.append(buf[pos:])
                    self._remaining = end - size
                    pos = size
                elif end > pos:
                    pieces.append(buf[pos:end])
                    pos = end
                    state = _END
                if state == _END:
                    if buf.startswith(b"\r\n", pos):
                        pos += 2
                        state = _SIZE
                    elif not (pos >= size or (pos + 1 == size and buf[pos] == 13)):
                        raise RemoteProtocolError("invalid-chunk-end")
            if state == _SIZE:
                pos, state, total = self._whole_chunks(buf, pos, total, pieces)
        except RemoteProtocolError:
            if not pieces:
                raise
            # Hand out the payload before the bad bytes; the next call raises on them.
        self._state = state
        self._total = total
        self.pos = pos
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            return Data(data if type(data) is bytes else bytes(data))
        if state == _TRAILERS:
            return self._read_trailers(buf, pos)
        return NEED_DATA

    def _whole_chunks(
        self, buf: bytes | bytearray, pos: int, total: int, pieces: list[bytes | bytearray]
    ) -> tuple[int, int, int]:
        """Decode chunks from a size line at ``pos`` on, appending their data to ``pieces``.

        Returns (pos, state, total) where it stopped. The hot loop of a body of many small
        chunks: per chunk a ``find`` (a compare for a one-digit size), a table or cache lookup,
        a slice and a compare.
        """
        size = len(buf)
        find = buf.find
        startswith = buf.startswith
        append = pieces.append
        sizes = _SIZES.get if type(buf) is bytes else None  # bytearray slices are unhashable
        digit = _HEX_DIGIT
        room = self._max_body - total  # body bytes still allowed
        try:
            while True:
                if startswith(b"\r\n", pos + 1):  # a one-byte size line: no find, no slice
                    length = digit[buf[pos]]
                    if 0 < length <= room:
                        end = pos + 3 + length
                        if startswith(b"\r\n", end):  # the whole chunk is here
                            append(buf[pos + 3 : end])
                            pos = end + 2
                            room -= length
                            continue
                    eol = pos + 1
                else:
                    eol = find(b"\r\n", pos, pos + _LINE_WINDOW)
                    if eol < 0:
                        if pos < size:
                            _line_incomplete(buf, pos, size)
                        return pos, _SIZE, self._max_body - room
                    length = sizes(buf[pos:eol], -1) if sizes is not None else -1
                if length <= 0:
                    length = _chunk_size(buf[pos:eol])
                    if not length:
                        # RFC 9112 7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF
                        self._searched = 0
                        return eol + 2, _TRAILERS, self._max_body - room
                if length > room:
                    raise RemoteProtocolError("body-too-large", 413, self._head)
                start = eol + 2
                end = start + length
                # RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
                if startswith(b"\r\n", end):
                    append(buf[start:end])
                    pos = end + 2
                    room -= length
                    continue
                room -= length
                if end > size:  # the rest of this chunk's data has not arrived yet
                    if start < size:
                        append(buf[start:])
                    self._remaining = end - size
                    return size, _DATA, self._max_body - room
                # The chunk's data is here but not (all of) its CRLF: the next read checks it.
                append(buf[start:end])
                return end, _END, self._max_body - room
        except RemoteProtocolError:
            if not pieces:
                raise
            # Hand out the payload first: stop in front of this size line, the next read
            # raises on it.
            return pos, _SIZE, self._max_body - room

    def _read_trailers(self, buf: bytes | bytearray, pos: int) -> Event:
        self.pos = pos
        # RFC 9112 7.1: chunked-body = *chunk last-chunk trailer-section CRLF
        if buf.startswith(b"\r\n", pos):
            self.pos = pos + 2
            return END_OF_MESSAGE
        size = len(buf)
        searched = pos + self._searched
        end = buf.find(b"\r\n\r\n", searched)
        budget = self._section_budget
        if end < 0:
            if pos >= size or (pos + 1 == size and buf[pos] == 13):
                return NEED_DATA  # nothing yet, or a CR that may begin the final CRLF
            error = first_offence(buf, pos, searched, size, max_section=budget)
            if error is not None:
                raise error
            self._searched = size - 3 - pos if size - 3 > pos else 0
            return NEED_DATA
        try:
            if end + 4 - pos > budget:
                raise RemoteProtocolError("header-section-too-large", 431)
            section = bytes(buf[pos:end])
            # RFC 9112 7.1.2: trailer fields follow the header field syntax; they count
            # against the same limits as the head's fields.
            fields, nfields, _, _, _ = BLOCK_CACHE.get(section) or parse_header_block(
                section, self._field_budget
            )
            if nfields > self._field_budget:
                raise RemoteProtocolError("too-many-header-fields", 431)
        except RemoteProtocolError as exc:
            raise (
                first_offence(buf, pos, pos, end + 4, complete=True, max_section=budget) or exc
            ) from None
        self.pos = end + 4
        self._head = None
        return EndOfMessage(list(fields))


def _line_incomplete(buf: bytes | bytearray, pos: int, size: int) -> None:
    """A size line without its CRLF yet: refuse it now if it already cannot be valid."""
    stop = pos + _LINE_WINDOW if size > pos + _LINE_WINDOW else size
    error = first_offence(
        buf, pos, pos, stop, max_line=MAX_CHUNK_LINE_BYTES, line_reason="chunk-line-too-long",
        size_first=True,
    )
    if error is not None:
        raise error


def _chunk_size(line: bytes | bytearray) -> int:
    """The size a chunk-size line announces (validated); plain lines go to the cache."""
    size, semicolon, _ = line.partition(b";")
    if semicolon:
        size = size.rstrip(b" \t")
    if not 0 < len(size) <= MAX_CHUNK_SIZE_DIGITS or size.translate(None, HEX_CHARS):
        raise _line_error(line, "invalid-chunk-size")
    # We ignore extensions, but only well-formed ones: an empty name ("2;", "2;=x") is not.
    if semicolon and _CHUNK_EXT.fullmatch(line, len(size)) is None:
        raise _line_error(line, "invalid-chunk-extension")
    length = int(size, 16)
    if not semicolon and type(line) is bytes:
        if len(_SIZES) >= _SIZES_MAX:
            _SIZES.clear()  # crude but bounded; the sizes in use come back on next use
        _SIZES[line] = length
    return length


def _line_error(line: bytes | bytearray, reason: str) -> RemoteProtocolError:
    # A byte refused on arrival (a bare CR/LF, a size that cannot go on) names the error when
    # it comes first: fed byte by byte, the line never got whole enough to be parsed.
    whole = bytes(line) + b"\r\n"
    return first_offence(whole, 0, 0, len(whole), complete=True, size_first=True) or (
        RemoteProtocolError(reason))
