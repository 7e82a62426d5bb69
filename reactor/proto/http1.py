"""The HTTP/1.1 request parser (bytes in, events out) and the response serializers (bytes back).

Strategy: the parser owns one receive buffer and a consumed offset ``_pos``. When everything fed
so far has been consumed, the next ``feed`` just keeps the caller's ``bytes`` object (no copy),
so the usual one-request-per-recv case slices requests straight out of it and a pipelined batch
is walked by offset without ever being copied. A short unconsumed tail (a partial chunk-size
line, say) followed by more data is joined with it into a new ``bytes``; only a long one
switches to a ``bytearray``, whose consumed front is dropped with ``del buf[:pos]`` (cheap in
CPython), so many small feeds stay linear.

A head is found with one ``find(b"\\r\\n\\r\\n")`` from ``_scan`` (the first offset not yet
searched, so a slowly arriving head is not rescanned) and cut into the request line and the
block of field lines. The request line is split once and each part checked with a set lookup
or one ``translate``; the field block is looked up in ``headers.BLOCK_CACHE`` (a keep-alive
client repeats it byte for byte) and parsed and validated in one pass only on a miss. The
state machine is a small integer in ``_state``; bodies are Content-Length (count down
``_remaining``, here) or chunked (handed to the ``chunked.ChunkedReader`` the parser holds).
Any RemoteProtocolError moves to the error state, where ``next_event`` raises the same error
again.

Errors do not depend on how the input was split: the earliest offending byte names the error.
Some rules are broken at a byte we can see while the head is still arriving -- a bare LF, a
bare CR (at the byte after it), the request line passing ``max_line_bytes`` (414), the head
reaching ``max_header_bytes`` unfinished (431) -- and ``headers.first_offence`` finds the
earliest such byte; everything else (request-line grammar, field lines, Host, framing) is only
judged once the head is complete, so a complete head that fails those checks is first scanned
for an earlier offence. Fed whole or byte by byte, ``GET /`` + 8,200 "a" + `` HTTP/1.1\n…`` is
414 (the 8,193rd line byte comes before the bare LF) and ``GET * HTTP/1.1\r\nHost: a\rb…`` is
bare-cr (the "b" comes before the end of the head, where asterisk-form is judged).

The serializers are defined in ``serialize`` and re-exported here.
"""

from __future__ import annotations

from reactor.proto.chunked import ChunkedReader
from reactor.proto.errors import RemoteProtocolError
from reactor.proto.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    EndOfMessage,
    Event,
    RequestHead,
)
from reactor.proto.headers import (
    BLOCK_CACHE,
    TOKEN_CHARS,
    first_offence,
    framing,
    parse_header_block,
    skip_empty_lines,
    valid_host,
)
from reactor.proto.serialize import (
    CONTINUE_100,
    LAST_CHUNK,
    encode_chunk,
    header_lines,
    reason_phrase,
    response_head,
    status_line,
)

__all__ = [
    "CONTINUE_100",
    "LAST_CHUNK",
    "RequestParser",
    "encode_chunk",
    "header_lines",
    "reason_phrase",
    "response_head",
    "status_line",
]

# Parser states.
S_HEAD = 0  # waiting for (the rest of) a request head
S_NO_BODY = 1  # head returned, no body (left): the next event is END_OF_MESSAGE
S_BODY = 2  # Content-Length body, _remaining bytes to go
S_CHUNKED = 3  # chunked body, read by _chunked
S_ERROR = 4  # a RemoteProtocolError was raised; next_event raises it again

# An unconsumed tail up to this size is copied into a new bytes object with the next feed
# (bytes slices are cheaper to check and hashable); a longer one goes to a bytearray.
_COPY_TAIL_BYTES = 2048

# Methods known to be tokens, so the common ones skip the translate check.
_KNOWN_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT")
)
_HTTP11 = b"1.1"
_HTTP10 = b"1.0"
_DIGITS = b"0123456789"
# Visible ASCII (0x21-0x7E): the bytes a request-target may contain.
_TARGET_CHARS = bytes(range(0x21, 0x7F))
# What a plain origin-form may hold without a second look: visible ASCII but "#", which
# starts a fragment (see `_other_target`).
_ORIGIN_CHARS = _TARGET_CHARS.replace(b"#", b"")


class RequestParser:
    """Turns the bytes of one connection into RequestHead, Data and EndOfMessage events.

    Limits (all in bytes or counts): ``max_line_bytes`` bounds the request line (414);
    ``max_header_bytes`` bounds the head from the first byte of the request line through the
    blank line that ends it, CRLFs included (431), and chunked trailers count against it
    together with the head; ``max_header_fields`` bounds header plus trailer fields (431);
    ``max_body_bytes`` bounds the body (413).
    """

    __slots__ = (
        "_buf",
        "_chunked",
        "_error",
        "_error_in_head",
        "_max_body",
        "_max_fields",
        "_max_header",
        "_max_line",
        "_pending_limits",
        "_pos",
        "_quick_limit",
        "_remaining",
        "_scan",
        "_state",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = 8192,
        max_header_bytes: int = 32768,
        max_header_fields: int = 100,
        max_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0  # first unconsumed byte of _buf
        self._scan = 0  # head/trailers: first offset not yet searched for CRLFCRLF
        self._state = S_HEAD
        self._error: RemoteProtocolError | None = None
        self._error_in_head = False  # the error was raised while reading a request head
        self._remaining = 0
        self._chunked = ChunkedReader()
        self._pending_limits: dict[str, int] | None = None
        self._max_line = max_line_bytes
        self._max_header = max_header_bytes
        self._max_fields = max_header_fields
        self._max_body = max_body_bytes
        self._quick_limit = 0  # heads up to this size pass both size limits; see _apply_limits
        self._apply_limits()

    # -- caller API ---------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if not data:
            return
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            # Everything consumed: keep the caller's object, no copy.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = self._scan = 0
            return
        scan = self._scan - pos
        self._scan = scan if scan > 0 else 0
        self._pos = 0
        if len(buf) - pos <= _COPY_TAIL_BYTES:
            self._buf = b"".join((memoryview(buf)[pos:], data))
        elif isinstance(buf, bytearray):
            del buf[:pos]
            buf += data
        else:
            grown = bytearray(memoryview(buf)[pos:])
            grown += data
            self._buf = grown

    def next_event(self) -> Event:
        """The next event, or NEED_DATA. Raises RemoteProtocolError on bad input."""
        state = self._state
        try:
            if state == S_HEAD:
                buf = self._buf
                if self._pos < len(buf):
                    return self._read_head()
                if buf:  # all consumed: drop the buffer so an idle connection holds nothing
                    self._buf = b""
                    self._pos = self._scan = 0
                return NEED_DATA
            if state == S_NO_BODY:
                # _end_message inlined: this branch ends every body-less request.
                self._state = S_HEAD
                self._scan = self._pos
                if self._pending_limits is not None:
                    self._apply_limits()
                return END_OF_MESSAGE
            if state == S_BODY:
                return self._read_body()
            if state == S_CHUNKED:
                return self._read_chunked()
            assert self._error is not None
            raise self._error
        except RemoteProtocolError as exc:
            if state != S_ERROR:
                self._error_in_head = state == S_HEAD
            self._state = S_ERROR
            self._error = exc
            raise

    @property
    def in_message(self) -> bool:
        """True once bytes of a request (other than leading CRLFs) arrived, until its end."""
        if self._state != S_HEAD:
            return True  # a head or body is under way, or the stream broke mid-request
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if pos >= size:
            return False
        if buf[pos] != 13:
            return True
        pos = skip_empty_lines(buf, pos)
        # A lone trailing CR may still become an empty line.
        return pos < size - 1 or (pos == size - 1 and buf[pos] != 13)

    @property
    def head_complete(self) -> bool:
        """True between returning a RequestHead and returning its EndOfMessage."""
        return S_NO_BODY <= self._state <= S_CHUNKED

    @property
    def buffered(self) -> int:
        """Bytes held but not yet consumed."""
        return len(self._buf) - self._pos

    def partial_request_line(self) -> tuple[bytes, bytes] | None:
        """(method, target) of a request whose line arrived but whose head did not end.

        For the logs of a request given up on (a header timeout, a client abort): says what
        was asked, also when the head was refused for a bad field after a good line. Only
        looks; the bytes are not validated here, so treat them as text.
        """
        if self._state != S_HEAD and not (self._state == S_ERROR and self._error_in_head):
            return None
        buf = self._buf
        start = skip_empty_lines(buf, self._pos)
        end = buf.find(b"\n", start, start + self._max_line + 2)
        if end < 0:
            return None
        parts = bytes(buf[start:end]).rstrip(b"\r").split(b" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            return None
        if self._state == S_ERROR and (parts[0].translate(None, TOKEN_CHARS)
                                       or parts[1].translate(None, _TARGET_CHARS)):
            return None  # a refused stream (binary, a TLS hello) is no request line to log
        return parts[0], parts[1]

    @property
    def trailing_data(self) -> bytes:
        """The unconsumed bytes, e.g. WebSocket frames that followed an Upgrade request."""
        return bytes(self._buf[self._pos :])

    def set_limits(
        self,
        *,
        max_line_bytes: int | None = None,
        max_header_bytes: int | None = None,
        max_header_fields: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        """Change limits; they apply from the next request head on."""
        limits = {
            "_max_line": max_line_bytes,
            "_max_header": max_header_bytes,
            "_max_fields": max_header_fields,
            "_max_body": max_body_bytes,
        }
        pending = self._pending_limits or {}
        pending.update({key: value for key, value in limits.items() if value is not None})
        self._pending_limits = pending
        if self._state == S_HEAD:
            self._apply_limits()

    # -- head ---------------------------------------------------------------------------------

    def _read_head(self) -> Event:
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            return self._head_incomplete()
        # The first CRLF ends the request line; it is at ``end`` when there are no fields.
        eol = buf.find(b"\r\n", pos, end + 2)
        if type(buf) is bytes:
            request_line = buf[pos:eol]
            block = buf[eol + 2 : end]  # the field lines, CRLF-separated
        else:
            request_line = bytes(buf[pos:eol])
            block = bytes(buf[eol + 2 : end])
        if not request_line:
            # RFC 9112 2.2: "a server that is expecting to receive and parse a request-line
            # SHOULD ignore at least one empty line (CRLF) received prior to the request-line."
            self._pos = self._scan = skip_empty_lines(buf, pos)
            return self._read_head()
        size = end + 4 - pos
        try:
            if size > self._quick_limit:
                self._check_head_size(eol - pos, size)

            # RFC 9112 3: request-line = method SP request-target SP HTTP-version, single
            # spaces. Each part is checked against its own grammar, which also keeps out
            # control bytes.
            try:
                method, target, version = request_line.split(b" ")
            except ValueError:
                raise RemoteProtocolError("invalid-request-line") from None
            if version == b"HTTP/1.1":
                version = _HTTP11
                is11 = True
            elif version == b"HTTP/1.0":
                version = _HTTP10
                is11 = False
            elif _later_http1(version):
                # RFC 9110 2.5: a later minor version of a major version we implement is
                # processed "as if it were in the highest minor version ... to which the
                # recipient is conformant" (nginx does the same); the answer says HTTP/1.1.
                version = _HTTP11
                is11 = True
            else:
                raise _version_error(version)
            if method not in _KNOWN_METHODS and (not method or method.translate(None, TOKEN_CHARS)):
                raise RemoteProtocolError("invalid-method")
            # RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ]; like every form it is
            # made of visible ASCII (RFC 3986), so controls, SP, HTAB and bytes > 0x7E are
            # refused.
            if not target or target[0] != 47 or target.translate(None, _ORIGIN_CHARS):
                target = _other_target(method, target)

            fields, nfields, hosts, special, frames = BLOCK_CACHE.get(block) or parse_header_block(
                block, self._max_fields
            )
            if nfields > self._max_fields:  # a cached block, parsed under an older limit
                raise RemoteProtocolError("too-many-header-fields", 431)
        except RemoteProtocolError as exc:
            raise self._earlier_offence(pos, end) or exc from None
        # RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
        # HTTP/1.1 request message that lacks a Host header field and to any request message
        # that contains more than one Host header field line".
        if hosts != 1 and (is11 or hosts):
            raise RemoteProtocolError("missing-host" if hosts == 0 else "duplicate-host")

        if special is None:
            self._pos = end + 4
            self._state = S_NO_BODY
            return RequestHead(method, target, version, list(fields), is11, False, 0, False)
        # Framing is judged before the head is consumed: a refused head (CL with TE, a bad
        # Content-Length) leaves `_pos` on its request line for `partial_request_line`,
        # which would otherwise read the body that follows as the request that was refused.
        frame = frames[is11] or framing(special, is11)
        self._pos = end + 4
        head = RequestHead(
            method,
            target,
            version,
            list(fields),
            frame.keep_alive,
            frame.expect_continue,
            frame.content_length,
            frame.chunked,
        )
        if frame.chunked:
            self._state = S_CHUNKED
            # Trailers count against the limits together with the head.
            self._chunked.start(
                head, self._max_body, self._max_header - size, self._max_fields - nfields
            )
        elif frame.content_length:
            if frame.content_length > self._max_body:
                raise RemoteProtocolError("body-too-large", 413, head)
            self._state = S_BODY
            self._remaining = frame.content_length
        else:
            self._state = S_NO_BODY
        return head

    def _check_head_size(self, line_bytes: int, head_bytes: int) -> None:
        """The 414/431 checks, for heads larger than the smaller of the two limits."""
        if line_bytes > self._max_line:
            raise RemoteProtocolError("request-line-too-long", 414)
        if head_bytes > self._max_header:
            raise RemoteProtocolError("header-section-too-large", 431)

    def _earlier_offence(self, pos: int, end: int) -> RemoteProtocolError | None:
        """The error of a byte of the complete head at ``pos`` that a byte-by-byte feed
        would have refused before the head was complete (error path only)."""
        return first_offence(
            self._buf,
            pos,
            pos,
            end + 4,
            complete=True,
            max_line=self._max_line,
            line_reason="request-line-too-long",
            line_status=414,
            method_first=True,
            max_section=self._max_header,
        )

    def _head_incomplete(self) -> Event:
        """No CRLFCRLF yet: check what arrived so far, then ask for more."""
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if pos < size and buf[pos] == 13:
            pos = self._pos = skip_empty_lines(buf, pos)
        if pos >= size:
            return self._drained()
        # Fail as soon as a byte breaks a rule (a bare CR/LF, a request line that cannot fit,
        # a head that needs at least one more byte than the limit), not at the end of the head.
        error = first_offence(
            buf,
            pos,
            self._scan if self._scan > pos else pos,
            size,
            max_line=self._max_line,
            line_reason="request-line-too-long",
            line_status=414,
            method_first=True,
            max_section=self._max_header,
        )
        if error is not None:
            raise error
        self._scan = size - 3 if size - 3 > pos else pos
        return NEED_DATA

    # -- bodies -------------------------------------------------------------------------------

    def _read_body(self) -> Event:
        """Up to ``_remaining`` buffered Content-Length body bytes as one Data."""
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available <= 0:
            return self._drained()
        remaining = self._remaining
        if available >= remaining:
            available = remaining
            self._state = S_NO_BODY
        else:
            self._remaining = remaining - available
        end = pos + available
        self._pos = end
        data = buf[pos:end]  # the whole bytes object itself when it is exactly the body
        return Data(data if type(data) is bytes else bytes(data))

    def _read_chunked(self) -> Event:
        reader = self._chunked
        buf = self._buf
        event = reader.read(buf, self._pos)
        pos = self._pos = reader.pos
        if type(event) is EndOfMessage:
            return self._end_message(event)
        if event is NEED_DATA and pos >= len(buf):
            return self._drained()
        return event

    # -- bookkeeping --------------------------------------------------------------------------

    def _end_message(self, event: EndOfMessage) -> EndOfMessage:
        self._state = S_HEAD
        self._scan = self._pos
        if self._pending_limits is not None:
            self._apply_limits()
        return event

    def _drained(self) -> Event:
        """NEED_DATA with nothing buffered: drop the old buffer so it can be freed."""
        self._buf = b""
        self._pos = self._scan = 0
        return NEED_DATA

    def _apply_limits(self) -> None:
        pending = self._pending_limits or {}
        self._pending_limits = None
        for key, value in pending.items():
            setattr(self, key, value)
        # A head no larger than both limits needs no separate request-line and head checks.
        self._quick_limit = min(self._max_line, self._max_header)


def _later_http1(version: bytes) -> bool:
    """HTTP/1.2 to HTTP/1.9: well formed, major version 1, minor above ours."""
    return len(version) == 8 and version.startswith(b"HTTP/1.") and 50 <= version[7] <= 57


def _version_error(version: bytes) -> RemoteProtocolError:
    # RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT (HTTP-name is case-sensitive).
    # A well-formed version we do not speak gets 505 (RFC 9110 15.6.6); anything else is a
    # malformed request line.
    if (
        len(version) == 8
        and version.startswith(b"HTTP/")
        and version[5] in _DIGITS
        and version[6] == 46
        and version[7] in _DIGITS
    ):
        return RemoteProtocolError("unsupported-http-version", 505)
    return RemoteProtocolError("invalid-http-version")


def _other_target(method: bytes, target: bytes) -> bytes:
    """A target that is not a plain origin-form, as the request uses it; RemoteProtocolError
    when no form accepts it. A fragment ("#...") is no part of a request target (RFC 9112
    3.2 has no place for one; RFC 3986 3.5: it is the client's), so one sent anyway is
    dropped, as nginx, gunicorn and uvicorn do, rather than routed as part of the path."""
    fragment = target.find(b"#")
    if fragment >= 0:
        target = target[:fragment]
    if not _other_target_ok(method, target):
        raise RemoteProtocolError("invalid-request-target")
    return target


def _other_target_ok(method: bytes, target: bytes) -> bool:
    """Whether a target that is not a plain origin-form is acceptable (RFC 9112 3.2)."""
    if not target or target.translate(None, _TARGET_CHARS):
        return False
    # RFC 9112 3.2.4: asterisk-form = "*", "only used for a server-wide OPTIONS request".
    if target == b"*":
        if method != b"OPTIONS":
            raise RemoteProtocolError("asterisk-form-without-options")
        return True
    if target[0] == 47:  # "/": origin-form
        return True
    # RFC 9112 3.2.2: absolute-form = absolute-URI; the scheme is case-insensitive. RFC 9110
    # 4.2.1: an http(s) URI with an empty host "MUST" be rejected as invalid; 4.2.4: userinfo
    # is an error (no "@" in the host grammar).
    prefix = target[:8].lower()
    if prefix.startswith(b"http://") or prefix == b"https://":
        authority = split_absolute_form(target)[0]
        return bool(authority) and authority[0] != 58 and valid_host(authority)  # 58: ":"
    # RFC 9112 3.2.3: authority-form = uri-host ":" port, "only used for CONNECT requests".
    return method == b"CONNECT" and _is_authority(target)


def split_absolute_form(target: bytes) -> tuple[bytes, bytes]:
    """An absolute-form target as (authority, origin-form): the authority runs from "//" to
    the first "/" or "?"; the rest is the path and query, "/" for an empty path."""
    start = target.find(b"://") + 3
    end = len(target)
    for delimiter in (b"/", b"?"):
        found = target.find(delimiter, start, end)
        if found >= 0:
            end = found
    rest = target[end:]
    return target[start:end], rest if rest[:1] == b"/" else b"/" + rest


def _is_authority(target: bytes) -> bool:
    """uri-host ":" port, by the Host grammar (`valid_host`), with both parts present."""
    host, colon, port = target.rpartition(b":")
    return bool(host) and bool(colon) and port.isdigit() and valid_host(target)
