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

Given the file's open-file cache entry, the pool path also leaves there what it answered
with (`Variant`: validators, the fields of the 200 and of the 304, a gzip body), and
`FileServer.cached` answers the next GETs and HEADs without Range on the loop from it: the
same steps 2 and 4 on the kept fields, no representation chosen anew (see `filecache`).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING, BinaryIO, cast

from reactor.app.compression import CompressibleTypes, GzipStream, accepts_gzip
from reactor.app.handlers import SHORTAGE_ERRNOS, precondition_failed
from reactor.app.static.conditional import (
    evaluate,
    field_list,
    http_date,
    make_etag,
    parse_http_date,
    range_applies,
)
from reactor.app.static.filecache import (
    KEEP_BYTES_TOTAL,
    CachedFile,
    OpenFileCache,
    Variant,
    sidecar_of,
    sidecar_unchanged,
)
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
                 gzip_enabled: bool = True, level: int = 6, min_size: int = 0,
                 keep_bytes: int = KEEP_BYTES_TOTAL) -> None:
        self.mount = mount
        self.cache = cache
        self.types = types
        self.gzip_enabled = gzip_enabled
        self.level = level
        self.min_size = min_size
        self.open_files = OpenFileCache(keep_bytes=keep_bytes)

    def cached(self, request: Request, entry: CachedFile) -> Response | None:
        """On the loop: the answer for a GET or HEAD of the file `entry` holds (just checked
        by `OpenFileCache.lookup`), made from the variant the pool path answered this kind of
        client with; None (the pool path) for a Range, or a variant not made yet."""
        conditional = False  # an If-* field at all
        others = False  # one besides If-Modified-Since and a single If-None-Match line
        if_none_match = None
        encodings = None
        for name, value in request.headers._fields:
            if name[:3] == b"if-":
                conditional = True
                if name == b"if-none-match" and if_none_match is None:
                    if_none_match = value
                elif name != b"if-modified-since":
                    others = True
            elif name == b"range":
                return None
            elif name == b"accept-encoding":  # all its lines, as `field_list` joins them
                encodings = value if encodings is None else encodings + b", " + value
        if entry.compressible and encodings is not None and accepts_gzip(encodings):
            variant = entry.for_gzip
        else:
            variant = entry.plain
        if variant is None or (variant.sidecar is not None
                               and not sidecar_unchanged(variant.sidecar)) or (
                variant.until and time.time() >= variant.until):
            return None
        if conditional:
            if if_none_match == variant.etag and not others:
                # how browsers revalidate: the tag they were given, alone on its line (what
                # `evaluate` answers then to a GET or a HEAD, If-Modified-Since or not)
                self.open_files.hits += 1
                return Response(304, variant.not_modified)
            status = evaluate(request.method, request.headers, variant.etag, variant.mtime)
            if status == 304:
                self.open_files.hits += 1
                return Response(304, variant.not_modified)
            if status == 412:
                self.open_files.hits += 1
                return precondition_failed()
        body: bytes | FileBody | None
        if variant.gzip:
            body = variant.body
            if body is None:
                return None  # only revalidated so far: compressed (or found) in the pool
        else:
            body = entry.data
            if body is None:  # too large to keep: sendfile from a new fd of the file
                try:
                    fd = os.dup(entry.fd)
                except OSError as exc:
                    if exc.errno not in SHORTAGE_ERRNOS:
                        raise
                    return None  # the pool path answers (a 503 if it cannot open it either)
                try:
                    body = as_file(fd, 0, entry.size)
                except BaseException:
                    os.close(fd)
                    raise
        self.open_files.hits += 1
        return Response(200, variant.fields, body)

    def respond(self, request: Request, opened: Opened, segments: list[str],
                content_type: bytes | None = None, *, etag: bytes | None = None,
                last_modified: bytes | None = None, entry: CachedFile | None = None
                ) -> Response:
        """The response for the open regular file at root/segments (closes or hands over);
        `content_type` replaces the type guessed from the name, in a 206's parts too;
        `etag` and `last_modified` (a handler's own validators) replace the file's, in the
        preconditions and If-Range too: they are what the client saw and sends back.
        `entry`: the open-file cache's entry for this file, given the variant answered."""
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
            return self._answer(request, rep, content_type, compressible, entry)
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
                compressible: bool, entry: CachedFile | None = None) -> Response:
        validators = [(b"Last-Modified", rep.last_modified), (b"ETag", rep.etag)]
        if self.mount.cache_control is not None:
            validators.append((b"Cache-Control", self.mount.cache_control.encode("ascii")))
        if compressible:
            validators.append(VARY_ACCEPT_ENCODING)
        fields = [(b"Content-Type", content_type), *validators]
        fields.append(GZIP if rep.gzip else ACCEPT_RANGES)
        variant = None
        mtime = rep.mtime  # None only for a handler's own unparsable date: never cached
        if entry is not None and mtime is not None and not rep.stream:
            # what this answer is made of, for the loop to answer the next ones with (not
            # for a streamed gzip; for a file dated in the future, whose Last-Modified is
            # this second, until this second ends)
            sidecar = None
            if rep.gzip and not rep.compress:
                sidecar = sidecar_of(rep.opened.path, rep.opened.info)
            until = 0.0 if mtime == int(rep.opened.info.st_mtime) else mtime + 1.0
            variant = Variant(rep.etag, mtime, fields.copy(), validators, gzip=rep.gzip,
                              sidecar=sidecar, until=until)
            self._keep(request, entry, variant, compressible)
        status = evaluate(request.method, request.headers, rep.etag, rep.mtime)
        if status == 304:
            rep.close()
            return Response(304, validators)
        if status == 412:
            rep.close()
            return precondition_failed()
        if not rep.gzip:
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
                    if variant is not None and entry is not None:
                        self.open_files.keep_gzip(entry, variant.with_body(data))
                    return Response(200, fields, data)
                # The file is no longer the size its validators describe (rewritten since
                # its stat): streamed, the answer is cut where the file ends, as a sendfile
                # answer is, instead of a whole gzip of what is left under those validators.
            return Response(200, fields, self._streamed(rep.opened))
        body = body_of(rep.opened, 0, rep.size, request.method)
        if variant is not None and entry is not None and rep.gzip and type(body) is bytes:
            self.open_files.keep_gzip(entry, variant.with_body(body))  # a sidecar's bytes
        return Response(200, fields, body)

    def _keep(self, request: Request, entry: CachedFile, variant: Variant,
              compressible: bool) -> None:
        """In the worker: `variant`, just made for `request`, is what the loop answers the
        same kind of client with, from `entry` (a gzip body is added once it is made)."""
        entry.compressible = compressible
        if variant.gzip:
            kept = entry.for_gzip
            if (kept is None or kept.etag != variant.etag or kept.sidecar != variant.sidecar
                    or kept.until != variant.until):
                # a 304 first (the loop answers the next 304s), a sidecar added, changed or
                # gone since, another second for a future date: the body is added once a
                # 200 made it
                self.open_files.keep_gzip(entry, variant)
            return
        entry.plain = variant
        if not compressible:
            entry.for_gzip = variant
            return
        headers = request.headers
        if (accepts_gzip(field_list(headers, b"accept-encoding"))
                and not (request.method == "GET" and b"range" in headers)):
            # identity to a client taking gzip: gzip is off, or the file below its minimum
            entry.for_gzip = variant

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
