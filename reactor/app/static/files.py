"""One file's response: pick the representation, check preconditions, apply Range, build the body.

Strategy (all blocking, in the pool; the caller hands over an open fd and its stat):
1. Representation. Identity, unless the type is compressible, the client accepts gzip and
   this is not a GET with Range (ranges are served on the identity bytes only). Then a
   precompressed sidecar `NAME.gz` at least as new as the file wins (like nginx's
   gzip_static; its own stat gives ETag and Last-Modified); else a file small enough for the
   gzip cache is compressed (or found) there, its ETag the identity one plus `-gz`; else a
   larger file is gzipped as it is sent (`StreamBody` + `GzipStream`: chunked, one piece in
   memory, paused while the client is slow), with the same `-gz` ETag (the output of one
   level is deterministic).
2. Preconditions (RFC 9110 13.2.2) against that representation's validators: 412 or 304.
3. Range (GET, identity only, If-Range permitting): 206 single or multipart, or 416.
4. Body: up to SMALL_FILE_BYTES read into bytes here; larger goes as `FileBody` and leaves
   with `os.sendfile` from the loop. HEAD never reads: a `FileBody` carries the length.
Every file response carries Last-Modified, ETag, Content-Type and, when set, Cache-Control;
identity ones Accept-Ranges; compressible types `Vary: Accept-Encoding` (304s included).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING, BinaryIO, cast

from reactor.app.compression import CompressibleTypes, GzipStream, accepts_gzip
from reactor.app.handlers import precondition_failed
from reactor.app.static.conditional import (
    evaluate,
    field_list,
    http_date,
    make_etag,
    parse_http_date,
    range_applies,
)
from reactor.app.static.filecache import OpenFileCache
from reactor.app.static.gzcache import GzipCache, cache_key
from reactor.app.static.paths import Opened, open_under
from reactor.app.static.ranges import (
    Multipart,
    content_range,
    parse_ranges,
    unsatisfied_range,
)
from reactor.app.types import (
    FileBody,
    PartsBody,
    Request,
    Response,
    StreamBody,
    text_response,
)

if TYPE_CHECKING:
    from reactor.app.static.mount import StaticMount

# Files up to this size are read whole in the worker and leave with the head in one write.
SMALL_FILE_BYTES = 64 * 1024

VARY_ACCEPT_ENCODING = (b"Vary", b"Accept-Encoding")
ACCEPT_RANGES = (b"Accept-Ranges", b"bytes")
GZIP = (b"Content-Encoding", b"gzip")
GZ_ETAG_SUFFIX = b"-gz"


class Representation:
    """What will be sent: its validators and the open fd it is made from."""

    __slots__ = ("compress", "etag", "gzip", "last_modified", "mtime", "opened", "size",
                 "stream")

    def __init__(self, opened: Opened, *, etag: bytes, mtime: int, size: int,
                 gzip: bool = False, compress: bool = False, stream: bool = False) -> None:
        self.opened = opened
        self.etag = etag
        # RFC 9110 8.8.2.1: a modification date in the future MUST be sent as the response's
        # Date instead; kept as it was, If-Modified-Since would answer 304 until that date
        # even after the file changed.
        self.mtime: int | None = min(mtime, int(time.time()))
        self.last_modified = http_date(self.mtime)
        self.size = size
        self.gzip = gzip  # sent with Content-Encoding: gzip
        self.compress = compress  # the fd holds identity bytes; gzip them via the cache
        self.stream = stream  # ...or, too large for the cache, while sending

    def close(self) -> None:
        self.opened.close()


class FileServer:
    """Answers for regular files of one mount; shares the app's gzip cache and policy."""

    def __init__(self, mount: StaticMount, cache: GzipCache, *, types: CompressibleTypes,
                 gzip_enabled: bool = True, level: int = 6, min_size: int = 0) -> None:
        self.mount = mount
        self.cache = cache
        self.types = types
        self.gzip_enabled = gzip_enabled
        self.level = level
        self.min_size = min_size
        self.open_files = OpenFileCache()

    def cached(self, request: Request, segments: list[str]) -> Response | None:
        """On the loop: the answer for a file in the open-file cache, when it needs no Range
        and no gzip (the identity representation the pool path would pick), else None."""
        headers = request.headers
        if b"range" in headers:
            return None
        content_type = self.mount.mime.type_for(segments[-1])
        compressible = content_type in self.types
        if compressible and accepts_gzip(field_list(headers, b"accept-encoding")):
            return None
        found = self.open_files.open(tuple(segments))
        if found is None:
            return None
        fd, info, entry = found
        fields = entry.fields  # same path, same type and policy: the same fields
        if fields is not None:
            for name, _value in headers._fields:
                if name[:3].lower() == b"if-":  # a precondition: evaluated below
                    break
            else:  # the plain 200 of this file, as `_answer` made it the first time
                try:
                    return Response(200, list(fields), as_file(fd, 0, info.st_size))
                except BaseException:
                    os.close(fd)
                    raise
        opened = Opened(fd, info, "")
        try:
            rep = Representation(opened, etag=make_etag(info), mtime=int(info.st_mtime),
                                 size=info.st_size)
            response = self._answer(request, rep, content_type, compressible,
                                    whole_file=True)
        except BaseException:
            opened.close()
            raise
        if response.status == 200:
            entry.fields = tuple(response.headers)
        return response

    def respond(self, request: Request, opened: Opened, segments: list[str],
                content_type: bytes | None = None, *, etag: bytes | None = None,
                last_modified: bytes | None = None) -> Response:
        """The response for the open regular file at root/segments (closes or hands over);
        `content_type` replaces the type guessed from the name, in a 206's parts too;
        `etag` and `last_modified` (a handler's own validators) replace the file's, in the
        preconditions and If-Range too: they are what the client saw and sends back."""
        if content_type is None:
            content_type = self.mount.mime.type_for(segments[-1])
        compressible = content_type in self.types
        try:
            rep = self._select(request, opened, segments, compressible)
        except BaseException:
            opened.close()
            raise
        if etag is not None:
            rep.etag = etag
        if last_modified is not None:  # a date that does not parse: no date conditions
            rep.last_modified = last_modified
            rep.mtime = parse_http_date(last_modified)
        try:
            return self._answer(request, rep, content_type, compressible)
        except BaseException:
            rep.close()
            raise

    # ---- 1. representation --------------------------------------------------------------
    def _select(self, request: Request, opened: Opened, segments: list[str],
                compressible: bool) -> Representation:
        info = opened.info
        identity = Representation(opened, etag=make_etag(info), mtime=int(info.st_mtime),
                                  size=info.st_size)
        headers = request.headers
        if (not compressible or not accepts_gzip(field_list(headers, b"accept-encoding"))
                or (request.method == "GET" and b"range" in headers)):
            return identity
        sidecar = self._sidecar(opened, segments)
        if sidecar is not None:
            opened.close()
            return sidecar
        if self.gzip_enabled and info.st_size >= self.min_size:
            # Compressed after the preconditions pass: a 304 costs no zlib time. Small
            # files through the cache, larger ones streamed as they are sent.
            return Representation(opened, etag=make_etag(info, GZ_ETAG_SUFFIX),
                                  mtime=int(info.st_mtime), size=info.st_size, gzip=True,
                                  compress=True, stream=not self.cache.fits(info.st_size))
        return identity

    def _sidecar(self, opened: Opened, segments: list[str]) -> Representation | None:
        mount = self.mount
        gz = open_under(mount.root, [*segments[:-1], segments[-1] + ".gz"], mount.symlinks)
        if gz is None:
            return None
        info = gz.info
        if gz.is_dir or info.st_mtime_ns < opened.info.st_mtime_ns:
            gz.close()  # stale: the file changed after its .gz was made
            return None
        return Representation(gz, etag=make_etag(info), mtime=int(info.st_mtime),
                              size=info.st_size, gzip=True)

    # ---- 2.-4. preconditions, range, body ---------------------------------------------------
    def _answer(self, request: Request, rep: Representation, content_type: bytes,
                compressible: bool, *, whole_file: bool = False) -> Response:
        validators = [(b"Last-Modified", rep.last_modified), (b"ETag", rep.etag)]
        if self.mount.cache_control is not None:
            validators.append((b"Cache-Control", self.mount.cache_control.encode("ascii")))
        if compressible:
            validators.append(VARY_ACCEPT_ENCODING)
        status = evaluate(request.method, request.headers, rep.etag, rep.mtime)
        if status == 304:
            rep.close()
            return Response(304, validators)
        if status == 412:
            rep.close()
            return precondition_failed()
        fields = [(b"Content-Type", content_type), *validators]
        if rep.gzip:
            fields.append(GZIP)
        else:
            fields.append(ACCEPT_RANGES)
            header = request.headers.get(b"range")
            if (header is not None and request.method == "GET"
                    and range_applies(request.headers, rep.etag, rep.last_modified)):
                ranges = parse_ranges(header, rep.size, max_ranges=self.mount.max_ranges)
                if ranges is not None:
                    return self._ranged(request, rep, content_type, fields, ranges)
        if rep.compress:
            if not rep.stream:
                data = self._compressed(rep.opened)
                if data is not None:
                    return Response(200, fields, data)
                # The file is no longer the size its validators describe (rewritten since
                # its stat): streamed, the answer is cut where the file ends, as a sendfile
                # answer is, instead of a whole gzip of what is left under those validators.
            return Response(200, fields, self._streamed(rep.opened))
        if whole_file:  # from the loop: sendfile, no read here
            body = as_file(rep.opened.fd, 0, rep.size)
            rep.opened.fd = -1
            return Response(200, fields, body)
        return Response(200, fields, body_of(rep.opened, 0, rep.size, request.method))

    def _streamed(self, opened: Opened) -> StreamBody:
        file = open(opened.fd, "rb", buffering=0)  # noqa: SIM115 - the body closes it
        opened.fd = -1
        return StreamBody(GzipStream(file, self.level, length=opened.info.st_size),
                          file.close)

    def _compressed(self, opened: Opened) -> bytes | None:
        """The gzip body from the cache (fd closed), or None when the file read short."""
        info = opened.info
        data = self.cache.get_or_compress(
            cache_key(opened.path, info, self.level),
            lambda: read_exactly(opened.fd, 0, info.st_size), self.level)
        if data is not None:
            opened.close()
        return data

    def _ranged(self, request: Request, rep: Representation, content_type: bytes,
                fields: list[tuple[bytes, bytes]], ranges: list[tuple[int, int]]) -> Response:
        opened = rep.opened
        size = rep.size
        if not ranges:
            opened.close()
            return text_response(416, "Range Not Satisfiable\n",
                                 [(b"Content-Range", unsatisfied_range(size))])
        if len(ranges) == 1:
            first, last = ranges[0]
            fields.append((b"Content-Range", content_range(first, last, size)))
            return Response(206, fields, body_of(opened, first, last - first + 1, "GET"))
        multipart = Multipart(secrets.token_hex(16).encode(), content_type, size)
        fields[0] = (b"Content-Type", multipart.media_type)
        if size <= SMALL_FILE_BYTES:
            data = read_exactly(opened.fd, 0, size)
            if len(data) == size:
                opened.close()
                return Response(206, fields, multipart.from_bytes(data, ranges))
        # One fd for every part: each part's FileBody closes the shared file once, the fd
        # goes with the last (a dup per range held up to max_ranges fds per answer: 50
        # clients asking 16 ranges each took 650 fds where nginx takes 50)
        shared = cast(BinaryIO, SharedFile(opened.fd, len(ranges)))
        opened.fd = -1
        files = [FileBody(shared, first, last - first + 1) for first, last in ranges]
        return Response(206, fields, PartsBody(multipart.from_files(files, ranges)))


def body_of(opened: Opened, offset: int, length: int, method: str) -> bytes | FileBody:
    """Bytes for a small GET (fd closed), else a `FileBody` that takes over the fd."""
    if method == "GET" and length <= SMALL_FILE_BYTES:
        data = read_exactly(opened.fd, offset, length)
        if len(data) == length:
            opened.close()
            return data
        # The file shrank since fstat: a FileBody makes the connection abort the response
        # rather than send a body that disagrees with its own Content-Length.
    body = as_file(opened.fd, offset, length)
    opened.fd = -1
    return body


class SharedFile:
    """An fd read by several parts of one answer (`fileno()`, as the connection reads a
    FileBody's file); closed when each of its `users` has closed it. Closes come from the
    thread that owns the answer (the loop, or the worker dropping it), never two at once."""

    __slots__ = ("_fd", "_users")

    def __init__(self, fd: int, users: int) -> None:
        self._fd = fd
        self._users = users

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._users > 0:
            self._users -= 1
            if self._users == 0:
                os.close(self._fd)
                self._fd = -1


def as_file(fd: int, offset: int, length: int) -> FileBody:
    return FileBody(open(fd, "rb", buffering=0), offset, length)


def read_exactly(fd: int, offset: int, length: int) -> bytes:
    """Up to `length` bytes from `offset` (fewer only if the file is shorter now)."""
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)
