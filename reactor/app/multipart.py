"""multipart/form-data (RFC 7578): a streaming parser from a binary file into `FormData`.

Strategy: the body is read in blocks; part content is written out as soon as it cannot be
the start of the next delimiter, so memory holds one block plus a delimiter's length,
whatever the size of the files. File parts go to a `Spool` (memory, then a temporary file
past FILE_SPOOL_BYTES); plain fields are kept in memory up to FIELD_MAX_BYTES each.
Anything malformed raises `MultipartError` (the request answers 400), as does a form over
its limits (parts, part header bytes each and in all, field size).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from reactor.app.request import (
    FILE_SPOOL_BYTES,
    FormData,
    MultiDict,
    Spool,
    UploadFile,
    decode_text,
)

BLOCK_BYTES = 64 * 1024
FIELD_MAX_BYTES = 1024 * 1024
HEADER_MAX_BYTES = 16 * 1024  # one part's header lines
# All parts' header lines together. Headers are parsed in Python at up to ~130 ns a byte
# (a Content-Disposition of `;;;...`, `%22%22...`, thousands of short lines): 1,000 parts of
# 16 KiB each cost a pool thread 1.5-2 s for one 16 MiB body (a plain upload of that size,
# ~30 ms) and the event loop its GIL. Browsers send ~100-200 bytes a part.
HEADERS_TOTAL_MAX_BYTES = 256 * 1024
MAX_PARTS = 1000
PADDING_MAX = 256  # a delimiter line's transport padding and CRLF


class MultipartError(ValueError):
    """A multipart body that cannot be parsed; str() is the reason for the client."""


def boundary_of(content_type: bytes) -> bytes | None:
    for param in content_type.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.strip().lower() == b"boundary":
            value = value.strip()
            if len(value) >= 2 and value[:1] == value[-1:] == b'"':
                value = value[1:-1]
            if 0 < len(value) <= 200:
                return value
    return None


class _Reader:
    __slots__ = ("buffer", "eof", "source")

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.buffer = b""
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        block = self.source.read(BLOCK_BYTES)
        if not block:
            self.eof = True
            return False
        self.buffer += block
        return True


def _parse_disposition(value: str) -> tuple[str, dict[str, str]]:
    """The disposition type and its parameters. A browser sends `name` and `filename` quoted
    with `"`, CR and LF as `%22`, `%0D`, `%0A` and nothing else escaped (WHATWG HTML's
    multipart/form-data encoding; undici's parser reverses it too); other clients (curl)
    escape `"` and `\\` with a backslash, as in an RFC 9110 quoted-string."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in _split_params(rest):
        key, eq, val = item.partition("=")
        if not eq:
            continue
        key = key.strip().lower()
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
            browser = '\\"' not in val  # a backslash-escaped quote: not a browser's
            val = val.replace('\\"', '"').replace("\\\\", "\\")
            if browser and "%" in val and key in ("name", "filename"):
                val = _WHATWG_ESCAPE.sub(_whatwg_unescape, val)
        params[key] = val
    return kind.strip().lower(), params


_WHATWG_ESCAPE = re.compile("%(?:22|0[ADad])")
_WHATWG_BYTES = {"%22": '"', "%0a": "\n", "%0d": "\r"}


def _whatwg_unescape(match: re.Match[str]) -> str:
    return _WHATWG_BYTES[match.group().lower()]


def _split_params(text: str) -> list[str]:
    """Split on `;` outside double quotes (a filename may contain `;`)."""
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append("".join(current))
            current = []
            continue
        current.append(ch)
    out.append("".join(current))
    return [item for item in out if item.strip()]


def parse_multipart(source: BinaryIO, boundary: bytes, charset: str = "utf-8") -> FormData:
    """The form in `source`. A text field is decoded in the charset of its part's
    Content-Type (RFC 7578 4.4), else `charset` (the form's), bad bytes replaced."""
    reader = _Reader(source)
    dash = b"--" + boundary
    delimiter = b"\r\n" + dash
    files: MultiDict[UploadFile] = MultiDict()
    form = FormData((), files)
    try:
        # Preamble: up to the first delimiter (at the very start, or after a CRLF). Once
        # some of it is dropped the buffer no longer begins the body: a "--boundary" there
        # is in the middle of a preamble line, no delimiter.
        at_start = True
        while True:
            buf = reader.buffer
            if at_start and buf.startswith(dash):
                reader.buffer = buf[len(dash):]
                break
            found = buf.find(delimiter)
            if found >= 0:
                reader.buffer = buf[found + len(delimiter):]
                break
            if len(buf) > len(delimiter):
                at_start = False
                reader.buffer = buf[-len(delimiter):]
            if not reader.fill():
                raise MultipartError("no multipart boundary in the body")
        parts = 0
        header_budget = HEADERS_TOTAL_MAX_BYTES
        while True:
            while len(reader.buffer) < 2 and reader.fill():
                pass
            if reader.buffer.startswith(b"--"):
                return form
            # transport padding, then CRLF, within PADDING_MAX bytes: a body with no CRLF
            # after a delimiter must not be read into memory whole
            while (b"\r\n" not in reader.buffer[:PADDING_MAX]
                   and len(reader.buffer) < PADDING_MAX and reader.fill()):
                pass
            line_end = reader.buffer.find(b"\r\n", 0, PADDING_MAX)
            if line_end < 0 or reader.buffer[:line_end].strip(b" \t"):
                raise MultipartError("malformed multipart delimiter line")
            reader.buffer = reader.buffer[line_end + 2:]
            parts += 1
            if parts > MAX_PARTS:
                raise MultipartError(f"more than {MAX_PARTS} parts")
            headers, used = _read_headers(reader, min(HEADER_MAX_BYTES, header_budget))
            header_budget -= used
            disposition, params = _parse_disposition(headers.get("content-disposition", ""))
            name = params.get("name")
            if disposition != "form-data" or name is None:
                raise MultipartError("a part without Content-Disposition: form-data; name=...")
            filename = _filename_of(params)
            if filename is not None:
                spool = Spool(FILE_SPOOL_BYTES)
                size = _read_content(reader, delimiter, spool.write, None)
                spool.file.seek(0)
                files.add(name, UploadFile(
                    name, _clean_filename(filename),
                    headers.get("content-type", "application/octet-stream"), spool.file, size,
                    headers))
            else:
                chunks: list[bytes] = []
                _read_content(reader, delimiter, chunks.append, FIELD_MAX_BYTES)
                kind = headers.get("content-type")
                form.add(name, decode_text(b"".join(chunks),
                                           kind.encode("utf-8") if kind else None, charset))
    except BaseException:
        form.close()
        raise


def _read_headers(reader: _Reader, limit: int) -> tuple[dict[str, str], int]:
    """The part's header fields (at most `limit` bytes of lines) and the bytes they took."""
    while True:
        # a part with no header lines first: its content may have a blank line of its own
        if reader.buffer.startswith(b"\r\n"):
            end = -2
            break
        end = reader.buffer.find(b"\r\n\r\n", 0, limit + 4)
        if end >= 0:
            break
        if len(reader.buffer) >= limit + 4:
            raise MultipartError("part headers too large")
        if not reader.fill():
            raise MultipartError("the body ends inside part headers")
    block, reader.buffer = reader.buffer[:max(end, 0)], reader.buffer[end + 4:]
    headers: dict[str, str] = {}
    try:  # browsers send UTF-8 (WHATWG); a legacy page's form sends its own 8-bit charset
        text = block.decode("utf-8")
    except UnicodeDecodeError:  # read as latin-1, as cookies are: no byte lost to U+FFFD
        text = block.decode("latin-1")
    for line in text.split("\r\n"):
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise MultipartError("malformed part header line")
        headers[key.strip().lower()] = value.strip()
    return headers, end + 4


def _read_content(reader: _Reader, delimiter: bytes, out: Callable[[bytes], object],
                  limit: int | None) -> int:
    """Write the part's content up to the next delimiter; returns its size."""
    size = 0
    keep = len(delimiter) - 1
    while True:
        buf = reader.buffer
        found = buf.find(delimiter)
        if found >= 0:
            piece = buf[:found]
            reader.buffer = buf[found + len(delimiter):]
            size += len(piece)
            if limit is not None and size > limit:
                raise MultipartError(f"a form field is larger than {limit} bytes")
            if piece:
                out(piece)
            return size
        if len(buf) > keep:
            piece = buf[:-keep]
            reader.buffer = buf[-keep:]
            size += len(piece)
            if limit is not None and size > limit:
                raise MultipartError(f"a form field is larger than {limit} bytes")
            out(piece)
        if not reader.fill():
            raise MultipartError("the body ends before the closing boundary")


def _filename_of(params: dict[str, str]) -> str | None:
    """The part's filename: `filename*` (an RFC 8187 ext-value) wins over `filename`; one
    that does not decode gives way to `filename`, or is kept as sent when there is none."""
    extended = params.get("filename*")
    if extended is not None:
        decoded = _ext_value(extended)
        if decoded is not None:
            return decoded
    plain = params.get("filename")
    return plain if plain is not None else extended


def _ext_value(value: str) -> str | None:
    """RFC 8187 3.2.1: charset'[language]'pct-encoded, the charset UTF-8 or ISO-8859-1 (the
    two every recipient must support), the language ignored; None when it is no such value."""
    charset, quote1, rest = value.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not (quote1 and quote2):
        return None
    charset = charset.lower()
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    return unquote_to_bytes(encoded).decode(charset, "replace")


def _clean_filename(name: str) -> str:
    """The name a browser sent, without any directory part (never trust it as a path)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]
