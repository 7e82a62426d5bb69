"""Chunked request bodies (RFC 9112 7.1), plus the parser state shared with ``http1``.

Strategy: ``BodyReader`` is the base class of ``RequestParser``. It owns the parser states and
the end-of-message bookkeeping, and reads chunked bodies: size line, data, CRLF, repeated, then
the last chunk and the trailer section. Data is handed out as it arrives, never waiting for a
whole chunk. The running total of chunk sizes is checked against ``max_body_bytes`` when each
size line is read, so an oversized body is refused before its bytes arrive. The attributes live
in ``RequestParser.__slots__``; they are only declared here for the type checker.
"""

from __future__ import annotations

from reactor.proto.errors import RemoteProtocolError
from reactor.proto.events import END_OF_MESSAGE, NEED_DATA, Data, EndOfMessage, Event, RequestHead
from reactor.proto.headers import (
    BLOCK_CACHE,
    HEX_CHARS,
    bare_line_end,
    check_bare_line_ends,
    has_ctl,
    parse_header_block,
)

__all__ = ["MAX_CHUNK_LINE_BYTES", "BodyReader"]

# Parser states.
S_HEAD = 0  # waiting for (the rest of) a request head
S_NO_BODY = 1  # head returned, no body (left): the next event is END_OF_MESSAGE
S_BODY = 2  # Content-Length body, _remaining bytes to go
S_CHUNK_SIZE = 3  # expecting a chunk-size line
S_CHUNK_DATA = 4  # inside chunk data, _remaining bytes to go
S_CHUNK_END = 5  # expecting the CRLF after chunk data
S_TRAILERS = 6  # after the last chunk: trailer fields, then CRLF
S_ERROR = 7  # a RemoteProtocolError was raised; next_event raises it again

# A chunk-size line (size and extensions) longer than this is refused: extensions are skipped,
# and a peer streaming an endless one must not make us buffer it.
MAX_CHUNK_LINE_BYTES = 4096
# RFC 9112 7.1: chunk-size = 1*HEXDIG; 16 hex digits already exceed any size we accept.
_MAX_CHUNK_SIZE_DIGITS = 16


class BodyReader:
    """Parser state, end-of-message bookkeeping and the chunked body reader."""

    __slots__ = ()

    _buf: bytes | bytearray
    _pos: int
    _scan: int
    _state: int
    _remaining: int
    _head: RequestHead | None
    _body_total: int
    _head_bytes: int
    _head_fields: int
    _pending_limits: dict[str, int] | None
    _max_header: int
    _max_fields: int
    _max_body: int
    _max_line: int
    _quick_limit: int

    def _read_chunked(self) -> Event:
        while True:
            state = self._state
            if state == S_CHUNK_DATA:
                return self._read_chunk_data()
            if state == S_CHUNK_SIZE:
                if not self._read_chunk_size():
                    return self._drained_or_wait()
            elif state == S_CHUNK_END:
                buf = self._buf
                pos = self._pos
                pair = buf[pos : pos + 2]
                # RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
                if pair != b"\r\n":
                    if pair == b"" or pair == b"\r":
                        return self._drained_or_wait()
                    raise RemoteProtocolError("invalid-chunk-end")
                self._pos = pos + 2
                self._state = S_CHUNK_SIZE
            else:
                return self._read_trailers()

    def _read_chunk_data(self) -> Event:
        return self._take_body_bytes(S_CHUNK_END)

    def _take_body_bytes(self, state_after: int) -> Event:
        """Up to `_remaining` buffered body bytes as one Data; `state_after` once all came."""
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available <= 0:
            return self._drained()
        remaining = self._remaining
        if available >= remaining:
            available = remaining
            self._state = state_after
        else:
            self._remaining = remaining - available
        end = pos + available
        self._pos = end
        data = buf[pos:end]  # the whole bytes object itself when it is exactly the body
        return Data(data if type(data) is bytes else bytes(data))

    def _read_chunk_size(self) -> bool:
        """Consume a chunk-size line; False when it has not fully arrived."""
        buf = self._buf
        pos = self._pos
        window = pos + MAX_CHUNK_LINE_BYTES + 2
        eol = buf.find(b"\r\n", pos, window)
        if eol < 0:
            # The line is incomplete (or too long): refuse a bare CR/LF in it right away.
            check_bare_line_ends(buf[pos:window], 0, 0)
            if len(buf) - pos - (buf[-1:] == b"\r") > MAX_CHUNK_LINE_BYTES:
                raise RemoteProtocolError("chunk-line-too-long")
            return False
        line = bytes(buf[pos:eol])
        size, semicolon, extensions = line.partition(b";")
        if semicolon:
            # RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS
            # chunk-ext-val ] ). We ignore extensions but still refuse control bytes in them.
            size = size.rstrip(b" \t")
            if has_ctl(extensions):
                raise _line_error(extensions, "invalid-chunk-extension")
        if not 0 < len(size) <= _MAX_CHUNK_SIZE_DIGITS or size.translate(None, HEX_CHARS):
            raise _line_error(size, "invalid-chunk-size")
        length = int(size, 16)
        total = self._body_total + length
        if total > self._max_body:
            raise RemoteProtocolError("body-too-large", 413, self._head)
        self._body_total = total
        self._pos = eol + 2
        if length:
            self._remaining = length
            self._state = S_CHUNK_DATA
        else:
            # RFC 9112 7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF, then the trailer section.
            self._scan = eol + 2
            self._state = S_TRAILERS
        return True

    def _read_trailers(self) -> Event:
        buf = self._buf
        pos = self._pos
        # RFC 9112 7.1: chunked-body = *chunk last-chunk trailer-section CRLF
        if buf[pos : pos + 2] == b"\r\n":
            self._pos = pos + 2
            return self._end_message(END_OF_MESSAGE)
        end = buf.find(b"\r\n\r\n", self._scan)
        budget = self._max_header - self._head_bytes
        if end < 0:
            size = len(buf)
            if pos >= size:
                return self._drained()
            check_bare_line_ends(buf, pos, self._scan if self._scan > pos else pos)
            if size - pos >= budget:
                raise RemoteProtocolError("header-section-too-large", 431)
            self._scan = size - 3 if size - 3 > pos else pos
            return NEED_DATA
        if end + 4 - pos > budget:
            raise RemoteProtocolError("header-section-too-large", 431)
        section = buf[pos:end]
        if type(section) is not bytes:
            section = bytes(section)
        # RFC 9112 7.1.2: trailer fields follow the header field syntax; they count against
        # the same limits as the head's fields.
        budget_fields = self._max_fields - self._head_fields
        fields, nfields, _, _, _ = BLOCK_CACHE.get(section) or parse_header_block(
            section, budget_fields
        )
        if nfields > budget_fields:
            raise RemoteProtocolError("too-many-header-fields", 431)
        trailers = list(fields)
        self._pos = end + 4
        return self._end_message(EndOfMessage(trailers))

    # -- bookkeeping --------------------------------------------------------------------------

    def _end_message(self, event: EndOfMessage) -> EndOfMessage:
        self._state = S_HEAD
        self._scan = self._pos
        self._head = None
        if self._pending_limits is not None:
            self._apply_limits()
        return event

    def _drained(self) -> Event:
        """NEED_DATA with nothing buffered: drop the old buffer so it can be freed."""
        self._buf = b""
        self._pos = self._scan = 0
        return NEED_DATA

    def _drained_or_wait(self) -> Event:
        return self._drained() if self._pos >= len(self._buf) else NEED_DATA

    def _apply_limits(self) -> None:
        pending = self._pending_limits or {}
        self._pending_limits = None
        for key, value in pending.items():
            setattr(self, key, value)
        # A head no larger than both limits needs no separate request-line and head checks.
        self._quick_limit = min(self._max_line, self._max_header)


def _line_error(part: bytes, reason: str) -> RemoteProtocolError:
    return bare_line_end(part) or RemoteProtocolError(reason)
