"""What `Request` parses on demand: query parameters, cookies, form bodies; body spooling.

Nothing here runs unless a handler asks (`request.query_params`, `.cookies`, `.form()`), so
the built-in routes pay nothing for it. Multipart bodies are parsed by
`reactor.app.multipart`, reading from the body file, so an upload spooled to disk is never
held in memory whole; its files are spooled again (memory, then disk past `FILE_SPOOL_BYTES`).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar, overload
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from reactor.app.types import Request

FILE_SPOOL_BYTES = 1024 * 1024
"""A form file part larger than this moves from memory to a temporary file."""

_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_SAMESITE = ("Strict", "Lax", "None")
# RFC 6265 4.1.1: a path-value is any CHAR but CTLs and ";"; a domain is a domain name
# (RFC 1034 labels: letters, digits, inner hyphens; a leading dot is allowed and ignored);
# a cookie date is an rfc1123-date (the IMF-fixdate of RFC 9110 5.6.7)
_COOKIE_PATH = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_COOKIE_DOMAIN = re.compile(
    r"\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_COOKIE_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?:0[1-9]|[12][0-9]|3[01]) "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] GMT")

V = TypeVar("V")
D = TypeVar("D")


class MissingKey(KeyError):
    """`d[key]` of query parameters or form fields without that key: a KeyError, and, not
    caught, a 400 naming the key (see `HTTPError`)."""

    status = 400

    def response(self) -> Any:
        from reactor.app.types import text_response
        return text_response(400, f"Bad Request: missing parameter {self.args[0]!r}\n")


class MissingHeader(MissingKey):
    """`request.headers[name]` without that field: a KeyError, and, not caught, a 400
    naming the field (as werkzeug's), not a 500 and a traceback for a client's omission."""

    def response(self) -> Any:
        from reactor.app.types import text_response
        name = self.args[0]
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        return text_response(400, f"Bad Request: missing header {name!r}\n")


class MultiDict(Generic[V]):
    """Keys with one or more values in arrival order: `d[key]` is the first value (a missing
    key raises `MissingKey`, a 400 if not caught), `d.get_all(key)` every value."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, V]] = ()) -> None:
        self._items: list[tuple[str, V]] = list(items)

    def __getitem__(self, key: str) -> V:
        for name, value in self._items:
            if name == key:
                return value
        raise MissingKey(key)

    @overload
    def get(self, key: str) -> V | None: ...
    @overload
    def get(self, key: str, default: D) -> V | D: ...  # any default, as dict.get

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in self._items:
            if name == key:
                return value
        return default

    def get_all(self, key: str) -> list[V]:
        return [value for name, value in self._items if name == key]

    getlist = get_all  # the name Flask users reach for

    def __contains__(self, key: object) -> bool:
        return any(name == key for name, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self._items))

    def items(self) -> list[tuple[str, V]]:
        """Every (key, value) pair, repeated keys included."""
        return list(self._items)

    def to_dict(self) -> dict[str, V]:
        """Key to first value."""
        out: dict[str, V] = {}
        for name, value in self._items:
            out.setdefault(name, value)
        return out

    def add(self, key: str, value: V) -> None:
        self._items.append((key, value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class QueryParams(MultiDict[str]):
    """The decoded query string (`+` is a space; blank values kept)."""


Cookies = dict[str, str]


class UploadFile:
    """A file part of a multipart form: `filename`, `content_type`, `size`, and `file`
    (a binary file positioned at the start; in memory, or on disk past a size)."""

    __slots__ = ("content_type", "file", "filename", "headers", "name", "size")

    def __init__(self, name: str, filename: str, content_type: str, file: BinaryIO,
                 size: int, headers: dict[str, str]) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.file = file
        self.size = size
        self.headers = headers

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Copy the file's content to `path` (from the start)."""
        import shutil
        self.file.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(self.file, out)
        self.file.seek(0)

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"<UploadFile {self.name}={self.filename!r} {self.size} bytes>"


class FormData(MultiDict[str]):
    """Form fields (str values); `files` holds the file parts by field name."""

    __slots__ = ("files",)

    def __init__(self, items: Iterable[tuple[str, str]] = (),
                 files: MultiDict[UploadFile] | None = None) -> None:
        super().__init__(items)
        self.files: MultiDict[UploadFile] = files if files is not None else MultiDict()

    def close(self) -> None:
        for _, upload in self.files.items():
            upload.close()


def parse_query(request: Request) -> QueryParams:
    if not request.query:
        return QueryParams()
    # The target arrived as latin-1 text; the query's bytes are percent-decoded as UTF-8.
    query = request.query.encode("latin-1").decode("utf-8", "replace")
    return QueryParams(parse_qsl(query, keep_blank_values=True, errors="replace"))


def parse_cookies(request: Request) -> Cookies:
    """Cookie header fields (RFC 6265 5.4), leniently: a malformed pair is skipped, not the
    whole header; the first of two same-named cookies wins (the most specific path). Names
    and values are UTF-8 (what `document.cookie` sends, as query strings are), each read as
    latin-1 instead when its bytes are not valid UTF-8."""
    cookies: Cookies = {}
    for value in request.headers.get_all(b"cookie"):
        # split and strip the bytes: str.strip() of latin-1 text would also take \x85 and
        # \xa0, the last byte of a UTF-8 "à"
        for pair in value.split(b";"):
            name, eq, val = pair.partition(b"=")
            name = name.strip()
            if not eq or not name:
                continue
            val = val.strip()
            if len(val) >= 2 and val[:1] == val[-1:] == b'"':
                val = val[1:-1]
            cookies.setdefault(_cookie_text(name), _cookie_text(val))
    return cookies


def _cookie_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # an older client's latin-1 bytes: kept, not U+FFFD


def format_cookie(name: str, value: str, *, max_age: int | timedelta | None,
                  expires: str | datetime | float | None, path: str | None,
                  domain: str | None, secure: bool, httponly: bool,
                  samesite: str | None) -> bytes:
    """A Set-Cookie value (RFC 6265 4.1). Raises ValueError, naming the attribute, for
    anything that cannot be sent as it is (a programming error: encode such values first):
    an attribute carrying `;` or a control character would add attributes of its own.
    `max_age` is seconds or a timedelta (as werkzeug's; fractions are cut);
    `expires` is a datetime (naive means UTC), seconds since the epoch, or an IMF-fixdate
    string ("Wed, 21 Oct 2015 07:28:00 GMT"); `samesite` is strict, lax or none (any case;
    none adds Secure, without which browsers drop the cookie); a `__Secure-` or `__Host-`
    name adds Secure too, for the same reason."""
    if not _COOKIE_NAME.fullmatch(name):
        raise ValueError(f"cookie name {name!r} is not a token")
    if not _COOKIE_VALUE.fullmatch(value):
        raise ValueError(f"cookie value {value!r} has characters a cookie cannot carry;"
                         " encode it (e.g. urllib.parse.quote)")
    parts = [f"{name}={value}"]
    if max_age is not None:
        seconds = max_age.total_seconds() if isinstance(max_age, timedelta) else max_age
        parts.append(f"Max-Age={int(seconds)}")
    if expires is not None:
        parts.append(f"Expires={_cookie_date(expires)}")
    if domain is not None:
        if not _COOKIE_DOMAIN.fullmatch(domain) or len(domain) > 254:
            raise ValueError(f"cookie domain {domain!r} is not a domain name (letters, digits,"
                             " hyphens and dots; an IDN in its xn-- form)")
        parts.append(f"Domain={domain}")
    if path is not None:
        if not _COOKIE_PATH.fullmatch(path):
            raise ValueError(f"cookie path {path!r} has a ';', a control or a non-ASCII"
                             " character; percent-encode it")
        parts.append(f"Path={path}")
    if samesite is not None:
        # normalised before the Secure test: "none" must add Secure as "None" does
        samesite = samesite.capitalize()
        if samesite not in _SAMESITE:
            raise ValueError(f"cookie samesite {samesite!r} is not one of"
                             f" {', '.join(_SAMESITE)}")
    # RFC 6265bis 4.1.3: a browser ignores a `__Secure-` or `__Host-` cookie without
    # Secure entirely -- a deletion too, which would leave the session it meant to end
    if secure or samesite == "None" or name[:9].lower() == "__secure-" or \
            name[:7].lower() == "__host-":
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        parts.append(f"SameSite={samesite}")
    # every piece is ASCII by now (token, cookie-octets, digits, checked attributes)
    return "; ".join(parts).encode("ascii")


def _cookie_date(expires: str | datetime | float) -> str:
    if isinstance(expires, str):
        if not _COOKIE_DATE.fullmatch(expires):
            raise ValueError(f"cookie expires {expires!r} is not a date like"
                             " 'Wed, 21 Oct 2015 07:28:00 GMT'; pass a datetime or a"
                             " timestamp")
        return expires
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return format_datetime(expires.astimezone(UTC), usegmt=True)
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        return formatdate(expires, usegmt=True)
    raise ValueError(f"cookie expires {expires!r} is not a datetime, a timestamp or a date")


def charset_of(content_type: bytes | None, default: str = "utf-8") -> str:
    """The codec for the `charset` parameter of `content_type`: a usable text encoding's
    canonical name, else `default` (missing, unknown or unusable, see `_codec_for`)."""
    if content_type:
        for param in content_type.split(b";")[1:]:
            key, _, value = param.strip().partition(b"=")
            if key.strip().lower() == b"charset":
                return _codec_for(value.strip().strip(b'"'), default)
    return default


def decode_text(data: bytes, content_type: bytes | None, default: str = "utf-8") -> str:
    """`data` as text in the Content-Type's charset (`default`, a codec name, when it names
    none or one that is no usable text encoding), bad bytes replaced. Never raises: the
    charset is the client's choice, and a codec that still fails here is read as UTF-8
    rather than answering 500."""
    codec = charset_of(content_type, default)
    try:
        return data.decode(codec, "replace")
    except (UnicodeError, LookupError, ValueError):
        return data.decode("utf-8", "replace")


# Python codecs that are no charset a client can mean: "undefined" always raises, idna
# refuses errors="replace", punycode raises on bytes >= 0x80 whatever the handler, the escape
# codecs read backslash sequences (and mbcs/oem exist on Windows only).
_NOT_CHARSETS = frozenset({"undefined", "idna", "punycode", "unicode-escape",
                           "raw-unicode-escape", "mbcs", "oem"})
_PROBE = bytes(range(256))
_CODECS: dict[bytes, str | None] = {}  # charset name as sent -> codec name, None: unusable
_CODECS_MAX = 64  # a client may send any name: a bounded cache, emptied when full
_CHARSET_MAX = 40  # IANA charset names are at most 40 characters (RFC 2978)


def _codec_for(name: bytes, default: str) -> str:
    """The verdict on one charset name, looked up and probed once, then cached."""
    try:
        codec = _CODECS[name]
    except KeyError:
        if len(_CODECS) >= _CODECS_MAX:
            _CODECS.clear()
        codec = _CODECS[name] = _usable_codec(name)
    return codec if codec is not None else default


def _usable_codec(name: bytes) -> str | None:
    if not name or len(name) > _CHARSET_MAX or not name.isascii():
        return None
    try:
        codec = codecs.lookup(name.decode("ascii")).name
        if codec in _NOT_CHARSETS:
            return None
        # bytes.decode refuses what is not a text encoding (base64, rot13...) with
        # LookupError; a codec that raises on arbitrary bytes despite "replace" is unusable
        _PROBE.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError):
        return None
    return codec


def parse_form(request: Request) -> FormData:
    from reactor.app.multipart import MAX_PARTS, MultipartError, boundary_of, parse_multipart
    from reactor.app.types import HTTPError

    kind = request.content_type
    if kind == "application/x-www-form-urlencoded" or (kind == "" and not request.body_file
                                                       and not request.body):
        content_type = request.headers.get(b"content-type")
        text = decode_text(request.read(), content_type)
        try:
            # as many fields as a multipart form may have parts: a 16 MiB body of "a&a&..."
            # would otherwise be 8 million pairs, ~640 MB and seconds of a pool thread.
            # %-escapes are bytes in the body's charset too (a Java client's
            # "charset=ISO-8859-1" form sends é as %E9)
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARTS,
                              encoding=charset_of(content_type), errors="replace")
        except UnicodeError:  # a codec that fails despite "replace" (see decode_text)
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARTS)
        except ValueError:
            raise HTTPError(400, f"more than {MAX_PARTS} form fields") from None
        return FormData(pairs)
    if kind == "multipart/form-data":
        boundary = boundary_of(request.headers.get(b"content-type") or b"")
        if boundary is None:
            raise HTTPError(400, "multipart/form-data without a boundary")
        try:
            # a text field's bytes are in its part's charset, else the form's (Apache
            # HttpClient sends `charset=ISO-8859-1` on the part or on the whole form)
            return parse_multipart(request.stream(), boundary,
                                   charset_of(request.headers.get(b"content-type")))
        except MultipartError as exc:
            raise HTTPError(400, str(exc)) from None
    raise HTTPError(415, "a form must be application/x-www-form-urlencoded or"
                         " multipart/form-data")


class Spool:
    """A request body written piece by piece: in memory up to `limit` bytes, then in an
    unnamed temporary file (nothing to clean up if the process dies)."""

    __slots__ = ("file", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.file: BinaryIO = io.BytesIO()

    @property
    def in_memory(self) -> bool:
        return isinstance(self.file, io.BytesIO)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit and isinstance(self.file, io.BytesIO):
            disk = tempfile.TemporaryFile()  # noqa: SIM115 - closed by `close`
            disk.write(self.file.getbuffer())
            self.file = disk
        self.file.write(chunk)

    def getvalue(self) -> bytes:
        file = self.file
        if isinstance(file, io.BytesIO):
            return file.getvalue()
        file.seek(0)
        return file.read()

    def close(self) -> None:
        self.file.close()
