"""HTTP/1.1 response serialization: status lines, header blocks, chunk framing.

Strategy: every status line is built once at import. A header block is joined in one go and
checked with three C-level scans of the result (the CR and LF counts must equal the line
count, and no other control character: deleting those leaves its length), instead of a
Python-level check per value; header
names are checked against a bounded set of names already known to be tokens.
Re-exported by ``reactor.proto.http1``.
"""

from __future__ import annotations

from reactor.proto.errors import LocalProtocolError
from reactor.proto.headers import CTL_CHARS, FIELD_CHARS, TOKEN_CHARS

__all__ = ["CONTINUE_100", "LAST_CHUNK", "encode_chunk", "header_lines", "reason_phrase",
           "response_head", "status_line"]

# RFC 9110 15 (plus 103 Early Hints, RFC 8297; 428/429/431/511, RFC 6585; 451, RFC 7725).
_REASONS: dict[int, bytes] = {
    100: b"Continue",
    101: b"Switching Protocols",
    103: b"Early Hints",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    203: b"Non-Authoritative Information",
    204: b"No Content",
    205: b"Reset Content",
    206: b"Partial Content",
    207: b"Multi-Status",
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    305: b"Use Proxy",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    402: b"Payment Required",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    409: b"Conflict",
    410: b"Gone",
    411: b"Length Required",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    416: b"Range Not Satisfiable",
    417: b"Expectation Failed",
    421: b"Misdirected Request",
    422: b"Unprocessable Content",
    423: b"Locked",
    424: b"Failed Dependency",
    425: b"Too Early",
    426: b"Upgrade Required",
    428: b"Precondition Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    451: b"Unavailable For Legal Reasons",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
    507: b"Insufficient Storage",  # RFC 4918 11.5: the upload paths answer it on ENOSPC
    508: b"Loop Detected",
    511: b"Network Authentication Required",
}
# RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in _REASONS.items()
}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
# RFC 9112 7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF, then an empty trailer section + CRLF.
LAST_CHUNK = b"0\r\n\r\n"

_VALID_NAMES: set[bytes] = set()
# RFC 9110 5.5: a field value holds no CTL but HTAB (nor DEL). CR and LF are counted apart
# (only the line ends may be there); any other one -- NUL, ESC, DEL... -- makes the response
# one that strict clients refuse whole (undici, Node's http: "Invalid header value char").
_CTL_NOT_CRLF = CTL_CHARS.replace(b"\r", b"").replace(b"\n", b"")
_VALID_NAMES_MAX = 1024


def reason_phrase(status: int) -> bytes:
    """The RFC reason phrase of ``status``, or b"" for a code without one."""
    return _REASONS.get(status, b"")


def response_head(
    status: int, headers: list[tuple[bytes, bytes]], *, reason: bytes | None = None
) -> bytes:
    """Serialize a status line and header fields, ending with the blank line."""
    line = _STATUS_LINES.get(status) if reason is None else None
    if line is None:
        line = _status_line(status, reason)
    parts = [line]
    for name, value in headers:
        if name not in _VALID_NAMES:
            _check_name(name)
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    # Names and the status line are known clean, so the only CR/LF allowed are the line ends;
    # one more anywhere means a value would split the response (RFC 9110 5.5: field values
    # never contain CR, LF, NUL or any other CTL but HTAB).
    lines = len(headers) + 2
    if (head.count(b"\n") != lines or head.count(b"\r") != lines
            or len(head.translate(None, _CTL_NOT_CRLF)) != len(head)):
        _raise_bad_value(headers)
    return head


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>\r\n`, precomputed for every registered code."""
    line = _STATUS_LINES.get(status)
    return line if line is not None else _status_line(status, None)


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """`Name: value\r\n` for each field (no final blank line), checked like
    `response_head`: for a caller that writes its own fixed, known-clean lines around them."""
    if not headers:
        return b""
    parts: list[bytes] = []
    for name, value in headers:
        if name not in _VALID_NAMES:
            _check_name(name)
        parts += (name, b": ", value, b"\r\n")
    block = b"".join(parts)
    lines = len(headers)
    if (block.count(b"\n") != lines or block.count(b"\r") != lines
            or len(block.translate(None, _CTL_NOT_CRLF)) != len(block)):
        _raise_bad_value(headers)
    return block


def encode_chunk(data: bytes) -> bytes:
    """Frame ``data`` (non-empty) as one chunk: hex size, CRLF, data, CRLF."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _status_line(status: int, reason: bytes | None) -> bytes:
    # RFC 9110 15: "Values outside the range 100..599 are invalid" (600-999 are for a
    # library's internal use, and a client treats them as a 5xx).
    if type(status) is not int or not 100 <= status <= 599:
        raise LocalProtocolError(f"invalid status code {status!r}")
    if reason is None:
        reason = _REASONS.get(status, b"")
    # RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
    elif reason.translate(None, FIELD_CHARS):
        raise LocalProtocolError(f"invalid reason phrase {reason!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def _check_name(name: bytes) -> None:
    # RFC 9110 5.1: field-name = token
    if not name or name.translate(None, TOKEN_CHARS):
        raise LocalProtocolError(f"invalid header name {name!r}")
    if len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)


def _raise_bad_value(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if len(value.translate(None, CTL_CHARS)) != len(value):
            raise LocalProtocolError(f"a control character in the value of header {name!r}"
                                     f" (RFC 9110 5.5): {value!r}")
    raise LocalProtocolError("invalid header block")
