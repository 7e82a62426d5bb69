"""Byte-level rules for HTTP/1.1 header sections: character tables, field lines, framing fields.

Strategy: validation runs on every request, so it works on whole byte strings in C instead of
per byte in Python. ``data.translate(None, CHARS)`` deletes the listed bytes: with the allowed
bytes listed, the result is empty iff ``data`` is clean; with the forbidden ones listed (a
shorter table, so cheaper), the length is unchanged iff ``data`` is clean. A block of field
lines is checked for control bytes in one call; names go through a bounded cache mapping the
raw name to its validated lower-case form; and a whole parsed block is memoized in
``BLOCK_CACHE``, because keep-alive clients repeat their header lines byte for byte.
Everything here raises ``RemoteProtocolError``; the diagnose helpers run only on the error path
and work out which rule was broken.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TypeAlias

from reactor.proto.errors import RemoteProtocolError

__all__ = [
    "BLOCK_CACHE",
    "CTL_CHARS",
    "FIELD_CHARS",
    "HEX_CHARS",
    "MAX_CHUNK_SIZE_DIGITS",
    "SPECIAL_FIELDS",
    "TOKEN_CHARS",
    "Framing",
    "HeaderBlock",
    "bare_line_end",
    "diagnose_bare",
    "diagnose_field_line",
    "field_name",
    "first_offence",
    "framing",
    "has_ctl",
    "parse_header_block",
    "skip_empty_lines",
]

# RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_"
#                 / "`" / "|" / "~" / DIGIT / ALPHA
TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 9110 5.5: field-value bytes are VCHAR / obs-text / SP / HTAB; everything else (CTLs other
# than HTAB, and DEL) is refused.
FIELD_CHARS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100)) + b" \t"
# The complement: CTLs except HTAB, and DEL. Deleting these (a short table) and comparing
# lengths is cheaper than deleting the allowed bytes, which matters on the hot path.
CTL_CHARS = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
HEX_CHARS = b"0123456789abcdefABCDEF"

# Fields that decide framing or connection handling; anything else is stored and not looked at.
SPECIAL_FIELDS = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect")
)

# RFC 9112 7.1: chunk-size = 1*HEXDIG; 16 hex digits already exceed any size we accept.
MAX_CHUNK_SIZE_DIGITS = 16
# More digits than this cannot be a body we would accept; refuse before int() does big math.
_MAX_CONTENT_LENGTH_DIGITS = 18
_NAME_CACHE_MAX = 1024
_WS = b" \t"
# RFC 9110 7.2: Host = uri-host [ ":" port ], port = *DIGIT; uri-host (RFC 3986 3.2.2) is an
# IP-literal in brackets (IPv6, or IPvFuture "v" 1*HEXDIG "." ...), or a reg-name of
# unreserved, pct-encoded and sub-delims characters (an IPv4 address is one). Empty is valid:
# a target without an authority (RFC 9110 7.2). No userinfo, no path, no space.
_VALID_HOSTS: set[bytes] = set()
_VALID_HOSTS_MAX = 256
_REG_NAME_PORT = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%]*(?::[0-9]*)?")
_PCT_ENCODED = re.compile(rb"(?:[^%]|%[0-9A-Fa-f]{2})*")
_IP_LITERAL_PORT = re.compile(
    rb"\[(?:(?P<ipv6>[0-9A-Fa-f:.]+)|[Vv][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    rb"(?::[0-9]*)?"
)

# Raw name -> validated lower-case name. Seeded with the usual spellings; grows (bounded) with
# the names actually seen, so a client's odd casing is validated once.
_NAME_CACHE: dict[bytes, bytes] = {}
_COMMON_NAMES = (
    b"Host User-Agent Accept Accept-Encoding Accept-Language Accept-Charset Connection"
    b" Content-Length Content-Type Content-Encoding Transfer-Encoding Cookie Referer Origin"
    b" Authorization Cache-Control Pragma Upgrade Expect TE Trailer Range If-Range"
    b" If-None-Match If-Match If-Modified-Since If-Unmodified-Since Keep-Alive Date"
    b" Sec-WebSocket-Key Sec-WebSocket-Version Sec-WebSocket-Extensions Sec-WebSocket-Protocol"
    b" X-Forwarded-For X-Forwarded-Proto X-Forwarded-Host X-Real-IP X-Request-ID Forwarded Via"
    b" DNT Upgrade-Insecure-Requests Sec-Fetch-Site Sec-Fetch-Mode Sec-Fetch-User"
    b" Sec-Fetch-Dest Priority"
).split()
for _name in _COMMON_NAMES:
    for _spelling in (_name, _name.lower(), _name.upper()):
        _NAME_CACHE[_spelling] = _name.lower()
del _name, _spelling

# A parsed header block: (fields, field count, Host count, non-Host special fields or None,
# (Framing for HTTP/1.0 or None, Framing for HTTP/1.1 or None)).
HeaderBlock: TypeAlias = tuple[
    tuple[tuple[bytes, bytes], ...],
    int,
    int,
    "tuple[tuple[bytes, bytes], ...] | None",
    "tuple[Framing | None, Framing | None]",
]
# Header-block bytes -> its HeaderBlock. A keep-alive client sends the same header lines again
# and again (only the request line changes), so a hit skips splitting, validating and
# lower-casing them. Measured feed-to-NEED_DATA for a 3-field GET: 2.3 us on a hit, 4.3 us on a
# miss (4.4 us with no cache at all). Keys are the exact bytes and parsing is deterministic,
# so an entry cannot be poisoned; the size is bounded in entries and per-key bytes (at most
# ~1 MiB of keys), and the framing errors of a cached block are raised again on every hit.
BLOCK_CACHE: dict[bytes, HeaderBlock] = {}
_BLOCK_CACHE_ENTRIES = 512
_BLOCK_CACHE_MAX_BYTES = 2048
_NO_FRAMES: tuple[None, None] = (None, None)
_EMPTY_BLOCK: HeaderBlock = ((), 0, 0, None, _NO_FRAMES)

_CRLF_RUN = re.compile(rb"(?:\r\n)*")
# A chunk-size line's start: its digits (one more than allowed is enough to refuse) and the
# BWS after them.
_SIZE_DIGITS = re.compile(rb"([0-9A-Fa-f]{0,%d})[ \t]*" % (MAX_CHUNK_SIZE_DIGITS + 1))


def skip_empty_lines(buf: bytes | bytearray, pos: int) -> int:
    """The index after the CRLF pairs starting at ``pos`` (C speed, no copy)."""
    match = _CRLF_RUN.match(buf, pos)
    assert match is not None  # a star pattern always matches
    return match.end()


def first_offence(
    buf: bytes | bytearray,
    first: int,
    start: int,
    stop: int,
    *,
    complete: bool = False,
    max_line: int = -1,
    line_reason: str = "",
    line_status: int = 400,
    method_first: bool = False,
    size_first: bool = False,
    max_section: int = -1,
) -> RemoteProtocolError | None:
    """The error named by the earliest offending byte of the section ``buf[first:stop]``.

    A section is a request head, a trailer section or a chunk-size line; ``complete`` says it
    ends at ``stop`` (else more bytes may follow). Bytes before ``start`` were checked already.
    Each rule has the byte that breaks it: a bare LF is its own; a bare CR's is the byte after
    it (until that arrives, the CR may begin a CRLF); the first line's is the byte that makes it
    longer than ``max_line`` (``line_reason``, ``line_status``); with ``method_first`` (a
    request head), the method's is its first byte that is not a tchar, or the SP that ends an
    empty method (400 invalid-method; HTAB, CR and LF end it for the other checks); with
    ``size_first`` (a chunk-size line), the size's is the first byte that cannot continue
    ``1*HEXDIG [BWS ";" ...]`` (400 invalid-chunk-size; CR and LF after the digits are the
    other checks'); the section's is its ``max_section``-th byte while it is not complete
    (431). Fed byte by byte, the parser would refuse the input at the earliest of these
    bytes, so that one names the error, whatever the split; on a tie the order above
    decides, as it does for the incremental checks.
    """
    # RFC 9112 2.2: "A recipient of such a bare CR MUST consider that element to be invalid or
    # replace each bare CR with SP"; a recipient "MAY recognize a single LF as a line
    # terminator" -- we do not: a front proxy that splits lines differently is how requests
    # get smuggled.
    at = stop
    error: RemoteProtocolError | None = None
    i = buf.find(b"\n", start, stop)
    while i >= 0:
        if i == first or buf[i - 1] != 13:
            at, error = i, RemoteProtocolError("bare-lf")
            break
        i = buf.find(b"\n", i + 1, stop)
    i = buf.find(b"\r", start, at)
    while i >= 0 and i + 1 < at:
        if buf[i + 1] != 10:
            at, error = i + 1, RemoteProtocolError("bare-cr")
            break
        i = buf.find(b"\r", i + 1, at)
    window = min(first + max_line + 2, stop)
    if max_line >= 0 and first + max_line < at and buf.find(b"\r\n", first, window) < 0:
        # No CRLF starts within the limit: the byte after the limit breaks it, unless it is a
        # CR (the line may still end exactly at the limit), then the byte after that.
        over = first + max_line
        if buf[over] == 13:
            over += 1
        if over < at:
            at, error = over, RemoteProtocolError(line_reason, line_status)
    if method_first:
        # RFC 9112 3: checked before the line ends, so that a TLS ClientHello or other binary
        # sent to a plain port is answered 400 at once (as nginx does), not after the header
        # timeout.
        offence = _method_offence(buf, first, min(at, first + max_line + 1)
                                  if max_line >= 0 else at)
        if offence >= 0:
            at, error = offence, RemoteProtocolError("invalid-method")
    if size_first:
        offence = _chunk_size_offence(buf, first, at)
        if offence >= 0:
            at, error = offence, RemoteProtocolError("invalid-chunk-size")
    if max_section >= 0:
        over = first + max_section - 1 if max_section else first
        if over < at and over < stop - complete:
            error = RemoteProtocolError("header-section-too-large", 431)
    return error


def _method_offence(buf: bytes | bytearray, first: int, end: int) -> int:
    """The index of the first byte of ``buf[first:end]`` that a request line's method
    (a token, RFC 9112 3) cannot have there, or -1. SP ends the method (and is one when it
    comes first); HTAB, CR and LF are left to the other rules and to the line parse, which
    names a misplaced separator."""
    space = buf.find(b" ", first, end)
    if space == first:
        return first
    bad = buf[first : end if space < 0 else space].translate(None, TOKEN_CHARS)
    return buf.find(bad[:1], first) if bad and bad[0] not in b"\t\r\n" else -1


def _chunk_size_offence(buf: bytes | bytearray, first: int, end: int) -> int:
    """The index of the first byte of ``buf[first:end]`` that a chunk-size line cannot have
    there, or -1. RFC 9112 7.1: chunk-size = 1*HEXDIG, at most 16 digits here; then CRLF, or
    BWS ";" and extensions (judged once the line is whole). C-speed scans: a line trickled in
    a byte at a time is looked at again on every byte."""
    match = _SIZE_DIGITS.match(buf, first, end)
    assert match is not None  # both runs may be empty
    at = match.end(1)
    if at - first > MAX_CHUNK_SIZE_DIGITS:
        return first + MAX_CHUNK_SIZE_DIGITS
    if at == end:
        return -1
    if at == first:  # no digit: an empty line and a bare CR/LF are the other rules'
        return -1 if buf[at] in b"\r\n" else at
    if buf[at] in b";\r\n":  # the size ended; a line end is the other rules'
        return -1
    at = match.end()  # past BWS, allowed before ";" only
    return at if at < end and buf[at] != 59 else -1


def bare_line_end(line: bytes) -> RemoteProtocolError | None:
    """The error for the first CR or LF inside a line already split on CRLF, if any."""
    lf = line.find(b"\n")
    cr = line.find(b"\r")
    if cr >= 0 and (lf < 0 or cr < lf):
        return RemoteProtocolError("bare-cr")
    if lf >= 0:
        return RemoteProtocolError("bare-lf")
    return None


def has_ctl(data: bytes) -> bool:
    """True if ``data`` holds a byte not allowed in a field value (a CTL other than HTAB, DEL)."""
    return len(data.translate(None, CTL_CHARS)) != len(data)


def field_name(name: bytes, sep: bytes, line: bytes) -> bytes:
    """Validate a header name the cache did not know; return it lower-cased."""
    if not sep or not name or name.translate(None, TOKEN_CHARS):
        raise diagnose_field_line(line)
    lname = name.lower()
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = lname
    return lname


def parse_header_block(block: bytes, max_fields: int) -> HeaderBlock:
    """Validate and parse field lines (CRLF-separated, no final CRLF) and memoize the result.

    Returns a ``HeaderBlock``. Raises RemoteProtocolError for a bad line, or 431 beyond
    ``max_fields``. Callers look the block up in ``BLOCK_CACHE`` first and re-check the field
    count against their current limit (an entry may come from a parser with a higher one).
    """
    if not block:
        return _EMPTY_BLOCK
    lines = block.split(b"\r\n")
    nfields = len(lines)
    if nfields > max_fields:
        raise RemoteProtocolError("too-many-header-fields", 431)
    # The CRLFs we split on must be the only control bytes: any other CTL, DEL or a bare CR/LF
    # fails this one pass (RFC 9110 5.5 field-value, RFC 9112 2.2).
    if len(block) - len(block.translate(None, CTL_CHARS)) != 2 * (nfields - 1):
        raise _diagnose_lines(lines)
    fields = []
    special = []
    hosts = 0
    names = _NAME_CACHE
    for line in lines:
        name, sep, value = line.partition(b":")
        lname = names.get(name)
        if lname is None or not sep:
            lname = field_name(name, sep, line)
        # RFC 9112 5: field-line = field-name ":" OWS field-value OWS
        field = (lname, value.strip(_WS))
        fields.append(field)
        if lname in SPECIAL_FIELDS:
            if lname == b"host":
                hosts += 1
                if not valid_host(field[1]):
                    # RFC 9112 3.2: a Host "with an invalid field value" MUST be a 400.
                    raise RemoteProtocolError("invalid-host")
            else:
                special.append(field)
    specials = tuple(special) if special else None
    # Framing depends only on these fields and the version: precompute it for HTTP/1.0
    # (index 0) and HTTP/1.1 (index 1). None where it raises: the caller recomputes to raise.
    frames = (
        (_try_framing(specials, False), _try_framing(specials, True)) if specials else _NO_FRAMES
    )
    result = (tuple(fields), nfields, hosts, specials, frames)
    if len(block) <= _BLOCK_CACHE_MAX_BYTES:
        if len(BLOCK_CACHE) >= _BLOCK_CACHE_ENTRIES:
            BLOCK_CACHE.clear()  # crude but bounded; the live blocks come back on next use
        BLOCK_CACHE[block] = result
    return result


def valid_host(value: bytes) -> bool:
    """Whether `value` is a Host field value (RFC 9110 7.2: uri-host [":" port], or empty)."""
    return value in _VALID_HOSTS or _valid_host(value)


def _valid_host(value: bytes) -> bool:
    """The grammar check, remembered for valid values: a server sees few distinct Hosts,
    while header blocks (cookies, trace ids) are often new and miss BLOCK_CACHE."""
    if value[:1] != b"[":  # a name
        valid = _REG_NAME_PORT.fullmatch(value) is not None and (
            b"%" not in value or _PCT_ENCODED.fullmatch(value) is not None)
    else:
        match = _IP_LITERAL_PORT.fullmatch(value)
        valid = match is not None and _valid_ipv6(match["ipv6"])
    if valid:
        if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
            _VALID_HOSTS.clear()
        _VALID_HOSTS.add(value)
    return valid


def _valid_ipv6(text: bytes | None) -> bool:
    if text is None:
        return True  # IPvFuture
    try:
        ipaddress.IPv6Address(text.decode("ascii"))
    except ValueError:
        return False
    return True


def _try_framing(fields: tuple[tuple[bytes, bytes], ...], is11: bool) -> Framing | None:
    try:
        return framing(fields, is11)
    except RemoteProtocolError:
        return None


class Framing:
    """What the special fields of a head say about the body and the connection."""

    __slots__ = ("chunked", "content_length", "expect_continue", "keep_alive")

    def __init__(
        self, keep_alive: bool, content_length: int | None, chunked: bool, expect: bool
    ) -> None:
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect


def framing(fields: tuple[tuple[bytes, bytes], ...], is11: bool) -> Framing:
    """Interpret Content-Length, Transfer-Encoding, Connection and Expect (not Host)."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connection: list[bytes] = []
    expect: list[bytes] = []
    for name, value in fields:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"connection":
            connection.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
        else:
            expect.append(value)
    keep_alive = _keep_alive(connection, is11) if connection else is11
    chunked = False
    content_length: int | None = 0
    if codings:
        # RFC 9112 6.1: "A server MAY reject a request that contains both Content-Length and
        # Transfer-Encoding" -- we must, it is the classic request-smuggling vector.
        if lengths:
            raise RemoteProtocolError("content-length-and-transfer-encoding")
        # RFC 9112 6.1: "A server or client that receives an HTTP/1.0 message containing a
        # Transfer-Encoding header field MUST treat the message as if the framing is faulty."
        if not is11:
            raise RemoteProtocolError("transfer-encoding-in-http10")
        chunked = _is_chunked(codings)
        content_length = None
    elif lengths:
        content_length = _content_length(lengths)
    has_body = chunked or bool(content_length)
    # RFC 9110 10.1.1: 100-continue only means something on a request with content, and an
    # HTTP/1.0 client cannot understand an interim 100 response.
    expect_continue = bool(expect) and is11 and has_body and _wants_continue(expect)
    return Framing(keep_alive, content_length, chunked, expect_continue)


def _list_items(values: list[bytes]) -> list[bytes]:
    """Lower-cased non-empty elements of a comma-separated list field (RFC 9110 5.6.1)."""
    items = [item.strip(_WS).lower() for item in b",".join(values).split(b",")]
    return [item for item in items if item]


def _keep_alive(values: list[bytes], is11: bool) -> bool:
    if len(values) == 1:
        value = values[0].lower()
        if value == b"keep-alive":
            return True
        if value == b"close":
            return False
    tokens = _list_items(values)
    # RFC 9112 9.3: "close" ends the connection after this response; otherwise HTTP/1.1 is
    # persistent, and HTTP/1.0 only when the client sent the "keep-alive" connection option.
    if b"close" in tokens:
        return False
    return is11 or b"keep-alive" in tokens


def _is_chunked(values: list[bytes]) -> bool:
    codings = _list_items(values)
    if codings == [b"chunked"]:
        return True
    # RFC 9112 6.1: "A sender MUST NOT apply the chunked transfer coding more than once".
    if codings.count(b"chunked") > 1:
        raise RemoteProtocolError("chunked-twice")
    if not codings:
        raise RemoteProtocolError("empty-transfer-encoding")
    # RFC 9112 6.3: "If a Transfer-Encoding header field is present in a request and the
    # chunked transfer coding is not the final encoding, the message body length cannot be
    # determined reliably; the server MUST respond with the 400 (Bad Request) status code"
    # -- whether or not we know the coding after it.
    if b"chunked" in codings and codings[-1] != b"chunked":
        raise RemoteProtocolError("chunked-not-last")
    # RFC 9112 6.1: "A server that receives a request message with a transfer coding it does
    # not understand SHOULD respond with 501 (Not Implemented)." We decode nothing but chunked.
    raise RemoteProtocolError("unsupported-transfer-coding", 501)


def _content_length(values: list[bytes]) -> int:
    if len(values) == 1:
        value = values[0]
        if value.isdigit() and len(value) <= _MAX_CONTENT_LENGTH_DIGITS:
            return int(value)
    # RFC 9110 8.6: Content-Length = 1*DIGIT. A list or repeated field is accepted only when
    # every member is the same value; anything else is unrecoverable framing (RFC 9112 6.3).
    first = b""
    for value in values:
        for item in value.split(b","):
            item = item.strip(_WS)
            if not item.isdigit():
                raise RemoteProtocolError("invalid-content-length")
            # Leading zeros are digits like any other (1*DIGIT): "000...05" is 5, as for
            # nginx and HAProxy (which forwards it as it came); only the significant digits
            # count against the limit (and int() never sees more than that).
            if len(item.lstrip(b"0")) > _MAX_CONTENT_LENGTH_DIGITS:
                raise RemoteProtocolError("content-length-too-long")
            if first and item != first:
                raise RemoteProtocolError("conflicting-content-length")
            first = item
    return int(first.lstrip(b"0") or b"0")


def _wants_continue(values: list[bytes]) -> bool:
    return b"100-continue" in _list_items(values)


def diagnose_field_line(line: bytes) -> RemoteProtocolError:
    """Name the rule a field line breaks (error path only)."""
    bare = bare_line_end(line)
    if bare is not None:
        return bare
    # RFC 9112 5.2: "A server that receives an obs-fold in a request message ... MUST either
    # reject the message by sending a 400 (Bad Request) ..." -- we reject.
    if line[:1] in (b" ", b"\t"):
        return RemoteProtocolError("obs-fold")
    name, sep, value = line.partition(b":")
    if not sep:
        return RemoteProtocolError("missing-colon")
    if not name:
        return RemoteProtocolError("empty-field-name")
    # RFC 9112 5.1: "A server MUST reject, with a response status code of 400 (Bad Request),
    # any received request message that contains whitespace between a header field name and
    # colon."
    if name[-1:] in (b" ", b"\t"):
        return RemoteProtocolError("whitespace-before-colon")
    if name.translate(None, TOKEN_CHARS):
        return RemoteProtocolError("invalid-field-name")
    if value.translate(None, FIELD_CHARS):
        return RemoteProtocolError("invalid-field-value")
    return RemoteProtocolError("invalid-field-line")


def _diagnose_lines(lines: list[bytes]) -> RemoteProtocolError:
    # A bare CR/LF anywhere wins: fed byte by byte it would have been refused on arrival.
    bare = diagnose_bare(lines)
    if bare is not None:
        return bare
    for line in lines:
        error = diagnose_field_line(line)
        if error.reason != "invalid-field-line":
            return error
    return RemoteProtocolError("invalid-field-line")


def diagnose_bare(lines: list[bytes]) -> RemoteProtocolError | None:
    """The error for the first bare CR/LF in lines already split on CRLF, if any."""
    for line in lines:
        bare = bare_line_end(line)
        if bare is not None:
            return bare
    return None
