"""The mount's request handler: methods, path checks, directories (redirect, index, listing).

Strategy: `StaticHandler` is mounted on the router as a non-blocking handler. On the loop it
does only pure work — OPTIONS and 405 answers, a GET or HEAD of a file the open-file cache
holds (`filecache`: one `fstat`, the answer from the entry), the path check of
`paths.clean_segments` — and hands everything else that touches the file system to the
pool as an `Offload`. With
uploads on, DELETE goes to the mount's `MountWriter` the same way, and PUT reaches
`upload` at head time through the router's `upload_handler` (see `upload.py`). The
handler picks every encoding itself (Content-Encoding, Vary), so the app's gzip middleware,
which only finishes results of blocking routes, never sees these responses.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_from_bytes

from reactor.app.compression import CompressibleTypes, accepts_gzip, gzip_bytes
from reactor.app.handlers import (
    SHORTAGE_ERRNOS,
    StorageReporter,
    precondition_failed,
    print_error,
    unavailable,
)
from reactor.app.static import listing
from reactor.app.static.conditional import evaluate, field_list
from reactor.app.static.filecache import KEEP_BYTES_TOTAL, short_of_fds
from reactor.app.static.files import FileServer
from reactor.app.static.gzcache import GzipCache
from reactor.app.static.paths import Opened, clean_segments, names_a_directory, open_under
from reactor.app.static.upload import MountWriter
from reactor.app.types import Offload, Request, Response, Upload, text_response

if TYPE_CHECKING:
    from reactor.app.static.mount import StaticMount

ALLOW = (b"Allow", b"GET, HEAD, OPTIONS")
ALLOW_WRITES = (b"Allow", b"DELETE, GET, HEAD, OPTIONS, PUT")
HTML = b"text/html; charset=utf-8"
JSON = b"application/json; charset=utf-8"
VARY_LISTING = (b"Vary", b"Accept, Accept-Encoding")
LISTING_CACHE_CONTROL = (b"Cache-Control", b"no-cache")
# Listings shorter than this are not worth a gzip header and a zlib call.
LISTING_GZIP_MIN_BYTES = 1024
# Query characters kept as they are in a redirect (`%` too: the query stays as encoded).
_QUERY_SAFE = "/?:@!$&'()*+,;=-._~%"


class StaticHandler:
    """`handler(request)` for one mount; `request.params["path"]` is the decoded remainder."""

    def __init__(self, mount: StaticMount, cache: GzipCache | None = None, *,
                 types: CompressibleTypes | None = None, gzip_enabled: bool = True,
                 level: int = 6, min_size: int = 0, keep_bytes: int = KEEP_BYTES_TOTAL,
                 report: StorageReporter = print_error) -> None:
        self.mount = mount
        self.gzip_enabled = gzip_enabled
        self.level = level
        self.files = FileServer(mount, cache if cache is not None else GzipCache(),
                                types=types if types is not None else CompressibleTypes(),
                                gzip_enabled=gzip_enabled, level=level, min_size=min_size,
                                keep_bytes=keep_bytes)
        self.report = report
        self.writer = MountWriter(mount, self.files.cache, report) if mount.uploads else None
        self.allow = ALLOW_WRITES if mount.uploads else ALLOW

    def __call__(self, request: Request) -> Response | Offload:
        method = request.method
        raw = request.params.get("path", b"")
        if method == "GET" or method == "HEAD":
            # a file served a moment ago: answered from the open-file cache, whose keys are
            # paths the pool path found clean and naming a regular file
            files = self.files
            entry = files.open_files.lookup(raw)
            if entry is not None:
                cached = files.cached(request, entry)
                if cached is not None:
                    return cached
        elif method == "OPTIONS":
            return Response(204, [self.allow])
        elif method == "DELETE" and self.writer is not None:
            return self.writer.delete(request)
        else:
            return text_response(405, "Method Not Allowed\n", [self.allow])
        segments = clean_segments(raw, dotfiles=self.mount.dotfiles)
        if segments is None:
            return not_found()
        return Offload(self.serve, request, segments, names_a_directory(raw))

    def answer_at_head(self, request: Request) -> Response | None:
        """The answer whatever the body, for a client waiting for 100 Continue: a method
        the mount does not take is a 405 now (RFC 9110 10.1.1: no 100 and an upload for
        nothing); None for the rest."""
        method = request.method
        if method in ("GET", "HEAD", "OPTIONS") or (method == "DELETE"
                                                    and self.writer is not None):
            return None
        return text_response(405, "Method Not Allowed\n", [self.allow])

    def upload(self, request: Request) -> Upload | Response:
        """PUT at head time (the router's `upload_handler`): an `Upload`, or a refusal."""
        if self.writer is None:
            return text_response(405, "Method Not Allowed\n", [self.allow])
        return self.writer.upload(request)

    def serve(self, request: Request, segments: list[str], slash: bool) -> Response:
        """Blocking: open the target and answer for a file or a directory; out of fds (or
        memory) on the way, the 503 of `handlers.unavailable`, naming the path asked for."""
        try:
            return self._serve(request, segments, slash)
        except OSError as exc:
            if exc.errno not in SHORTAGE_ERRNOS:
                raise
            short_of_fds()  # no open-file cache entries while it lasts
            return unavailable(exc, os.path.join(self.mount.root, *segments), request,
                               self.report)

    def _serve(self, request: Request, segments: list[str], slash: bool) -> Response:
        mount = self.mount
        opened = open_under(mount.root, segments, mount.symlinks)
        if opened is None:
            return not_found()
        if not opened.is_dir:
            if slash:  # `/file.txt/` names a directory that is not there
                opened.close()
                return not_found()
            entry = None
            if stat.S_ISREG(opened.info.st_mode):
                raw = request.params.get("path", b"")
                if raw == "/".join(["", *segments]).encode("utf-8"):  # canonical: a key
                    entry = self.files.open_files.put(raw, opened.fd, opened.info)
            return self.files.respond(request, opened, segments, entry=entry)
        return self._directory(request, opened, segments, slash)

    def _directory(self, request: Request, opened: Opened, segments: list[str], slash: bool
                   ) -> Response:
        mount = self.mount
        try:
            if not slash:
                return self._redirect(request, segments)
            if mount.index is not None:
                index = open_under(mount.root, [*segments, mount.index], mount.symlinks)
                if index is not None:
                    if not index.is_dir:
                        return self.files.respond(request, index, [*segments, mount.index])
                    index.close()
            if mount.listing:
                return self._listing(request, opened, segments)
            return not_found()
        finally:
            opened.close()

    def _redirect(self, request: Request, segments: list[str]) -> Response:
        """301 to the slash form, built from the clean segments (never `//host` open
        redirects from a path like `//evil.example/dir`), keeping the query."""
        location = self.url_path(segments).encode("ascii")
        if request.query:
            query = quote_from_bytes(request.query.encode("latin-1"), safe=_QUERY_SAFE)
            location += b"?" + query.encode("ascii")
        return text_response(301, "Moved Permanently\n", [(b"Location", location)])

    def url_path(self, segments: list[str], *, encode: bool = True) -> str:
        """The directory's URL path under the mount prefix, ending in `/`."""
        prefix = self.mount.prefix.rstrip("/")
        names = [quote(s, safe="!$&'()*+,;=:@~") if encode else s for s in segments]
        return prefix + "/" + "".join(name + "/" for name in names)

    def _listing(self, request: Request, opened: Opened, segments: list[str]) -> Response:
        mount = self.mount
        # RFC 9110 13.2.1: preconditions hold for a listing too, though it has no validators:
        # `If-None-Match: *` is a 304, an `If-Match` other than `*` a 412 (as nginx answers)
        status = evaluate(request.method, request.headers, b"", None)
        if status == 304:
            return Response(304, [VARY_LISTING, LISTING_CACHE_CONTROL])
        if status == 412:
            return precondition_failed()
        entries = listing.collect(opened.fd, opened.path, mount.root, dotfiles=mount.dotfiles,
                                  symlinks=mount.symlinks)
        shown = self.url_path(segments, encode=False)
        if listing.wants_json(field_list(request.headers, b"accept")):
            content_type, body = JSON, listing.render_json(shown, entries)
        else:
            content_type, body = HTML, listing.render_html(shown, entries)
        fields = [(b"Content-Type", content_type), VARY_LISTING, LISTING_CACHE_CONTROL]
        if (self.gzip_enabled and len(body) >= LISTING_GZIP_MIN_BYTES
                and accepts_gzip(field_list(request.headers, b"accept-encoding"))):
            body = gzip_bytes(body, self.level)
            fields.append((b"Content-Encoding", b"gzip"))
        return Response(200, fields, body)


def not_found() -> Response:
    return text_response(404, "Not Found\n")
