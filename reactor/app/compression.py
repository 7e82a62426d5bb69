"""Response compression: `Accept-Encoding` negotiation (RFC 9110 12.5.3) and gzip."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from reactor.app.types import FileTruncated

DEFAULT_TYPES = ("text/*", "application/json", "application/javascript", "application/xml",
                 "image/svg+xml")

_accept_cache: dict[bytes, bool] = {}
_ACCEPT_CACHE_MAX = 512  # clients send a handful of distinct values; bound it anyway


def accepts_gzip(header: bytes | None) -> bool:
    """Whether an `Accept-Encoding` value admits gzip.

    A comma list of codings with optional `;q=` weights, case-insensitive. `gzip` (or its
    alias `x-gzip`) with q > 0 accepts; `gzip;q=0` refuses even when `*` would accept;
    `*` with q > 0 accepts gzip when gzip is not listed; unknown codings are ignored.
    """
    if not header:
        return False
    cached = _accept_cache.get(header)
    if cached is None:
        cached = _parse_accepts_gzip(header)
        if len(_accept_cache) >= _ACCEPT_CACHE_MAX:
            _accept_cache.clear()
        _accept_cache[header] = cached
    return cached


def _parse_accepts_gzip(header: bytes) -> bool:
    gzip_q: float | None = None
    star_q: float | None = None
    for member in header.split(b","):
        coding, _, params = member.partition(b";")
        coding = coding.strip().lower()
        q = _qvalue(params)
        if q is None:
            continue  # a malformed weight: ignore the member rather than guess
        if coding in (b"gzip", b"x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == b"*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _qvalue(params: bytes) -> float | None:
    """The `q` weight of one member (1.0 when absent), or None when it is malformed."""
    q = 1.0
    for param in params.split(b";"):
        name, eq, value = param.partition(b"=")
        if name.strip().lower() != b"q":
            continue
        if not eq:
            return None
        try:
            q = float(value.strip())
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0:
            return None
    return q


class CompressibleTypes:
    """Media types worth compressing: exact names or `type/*` wildcards."""

    __slots__ = ("_answers", "_exact", "_prefixes")

    # Handlers send a handful of distinct Content-Type values: remember each answer.
    _ANSWERS_MAX = 256

    def __init__(self, patterns: Iterable[str] = DEFAULT_TYPES) -> None:
        self._answers: dict[bytes, bool] = {}
        exact, prefixes = set(), []
        for pattern in patterns:
            pattern = pattern.strip().lower()
            if pattern.endswith("/*"):
                prefixes.append(pattern[:-1].encode())
            else:
                exact.add(pattern.encode())
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __contains__(self, content_type: bytes | None) -> bool:
        if not content_type:
            return False
        answer = self._answers.get(content_type)
        if answer is None:
            media = content_type.partition(b";")[0].strip().lower()
            answer = media in self._exact or media.startswith(self._prefixes)
            if len(self._answers) >= self._ANSWERS_MAX:
                self._answers.clear()
            self._answers[content_type] = answer
        return answer


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """A complete gzip member. mtime 0 keeps output deterministic (cacheable, testable)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


class FileChanged(FileTruncated):
    """The file being gzipped ended before the length it was announced with (truncated or
    rewritten meanwhile): the answer must be cut, not completed with what is left."""


class GzipStream:
    """`produce()` for a `StreamBody`: a file gzipped piece by piece (runs on a worker).

    Each call reads up to `read_bytes` and returns what zlib emitted for it (zlib buffers,
    so a call may read several pieces before it has output); then the gzip trailer; then b"".
    Memory per stream is one piece plus zlib's window, whatever the file's size. With
    `length` (the size the validators describe) it reads that many bytes, no more, and raises
    `FileChanged` if the file ends sooner: a well-formed gzip of a truncated file would be
    taken (and cached, under the old ETag) as the whole one.
    """

    __slots__ = ("_compressor", "_file", "_left", "_read_bytes")

    def __init__(self, file: Any, level: int = 6, read_bytes: int = 256 * 1024,
                 length: int | None = None) -> None:
        self._file = file
        self._compressor: Any = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._read_bytes = read_bytes
        self._left = length

    def __call__(self) -> bytes:
        compressor = self._compressor
        if compressor is None:
            return b""
        while True:
            left = self._left
            if left is None:
                data = self._file.read(self._read_bytes)
            elif left:
                data = self._file.read(min(left, self._read_bytes))
                if not data:
                    self._compressor = None
                    raise FileChanged(left)
                self._left = left - len(data)
            else:
                data = b""
            if not data:
                self._compressor = None
                return compressor.flush()
            out = compressor.compress(data)
            if out:
                return out
