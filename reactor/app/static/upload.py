"""Writes on document roots (`StaticMount(uploads=True)`): PUT streams a file in, DELETE
removes one.

Strategy:
- Paths go through the same `clean_segments` as GET, on the loop at head time, so a bad
  path is a 404 before any body is read. A path ending in `/` (or `/.`), the root itself and an
  existing directory are 409 Conflict: directories are never created, replaced or removed.
  A PUT whose parent directory is missing is 409 as well (WebDAV's answer, RFC 4918
  9.7.1), also when it is removed while the body arrives; a DELETE there is a 404.
- Symlinks (`paths.write_location`): a write never leaves the root, whatever the policy —
  under "follow" too, where GET may read outside. Under "deny" any link in the path is a
  404. Otherwise a link that stays inside the root is written through (PUT replaces and
  DELETE removes the file GET serves), and one that leads out is a 404, its target
  untouched. The parent is then opened one directory at a time with O_NOFOLLOW and the
  file written relative to it, so a link swapped in after the check is a 404, never a
  write elsewhere.
- The write is `handlers.FileUpload`, shared with /files: a new file beside the target
  (`newfile.NewFile`: unnamed where O_TMPFILE works, so even a SIGKILL leaves nothing),
  fsync, then linked or renamed into place; abort leaves nothing. DELETE unlinks relative
  to the open parent.
- Preconditions (RFC 9110 13.2.2) compare with the tags GET sends for the file: its ETag,
  and the `-gz` tag of the cached gzip copy made from the same stat (a client may hold
  either). A sidecar's tag does not count: it describes another file. Checked before the
  body is read and again just before the file is put in place. RFC 9110 13.2.1: conditions
  never turn a 404 or 409 into a 412.
- After a write the gzip cache forgets the path. Its keys carry inode, size and mtime, so
  a stale body would miss anyway; forgetting also covers an inode reused within one mtime
  tick, and frees the memory at once.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

from reactor.app.handlers import (
    NAME_MAX_BYTES,
    FileUpload,
    StorageReporter,
    WriteTarget,
    file_system_error,
    is_a_directory,
    parent_missing,
    partial_body_refused,
    precondition_failed,
    print_error,
)
from reactor.app.static.conditional import make_etag, write_allowed
from reactor.app.static.files import GZ_ETAG_SUFFIX
from reactor.app.static.paths import (
    clean_segments,
    names_a_directory,
    open_directory,
    write_location,
)
from reactor.app.types import Offload, Request, Response, text_response

if TYPE_CHECKING:
    from reactor.app.static.gzcache import GzipCache
    from reactor.app.static.mount import StaticMount

# open_directory failures that hide the path (a link under "deny", no permission).
_REFUSED = frozenset({errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG})


class MountWriter:
    """PUT and DELETE for one mount; `upload` runs at head time on the loop."""

    def __init__(self, mount: StaticMount, cache: GzipCache,
                 report: StorageReporter = print_error) -> None:
        self.mount = mount
        self.cache = cache
        self.report = report

    def upload(self, request: Request) -> FileUpload | Response:
        """PUT, at head time: refuse a bad path before the body, else stream it in."""
        segments = self._segments(request)
        if isinstance(segments, Response):
            return segments
        return partial_body_refused(request) or MountUpload(self, request, segments)

    def delete(self, request: Request) -> Response | Offload:
        segments = self._segments(request)
        if isinstance(segments, Response):
            return segments
        return Offload(self.remove, request, segments)

    def remove(self, request: Request, segments: list[str]) -> Response:
        """Blocking: DELETE one regular file."""
        target = self.open_target(segments)
        if target is None:
            return _not_found()
        if isinstance(target, Response):
            return target
        try:
            current = target.lstat()
            if current is not None and stat.S_ISDIR(current.st_mode):
                return is_a_directory()
            if current is None or not stat.S_ISREG(current.st_mode):
                return _not_found()
            refused = self.precondition(request, current)
            if refused is not None:
                return refused
            os.unlink(target.name, dir_fd=target.dir_fd)
            os.fsync(target.dir_fd)
            self.forget(target, segments)
        except FileNotFoundError:
            return _not_found()  # another DELETE won
        except OSError as exc:
            return file_system_error(exc, target.path, request, "delete-failed", self.report)
        finally:
            target.close()
        return Response(204)

    def open_target(self, segments: list[str]) -> WriteTarget | Response | None:
        """Blocking: the open parent directory and the file name, a refusal, or None when
        the parent directory is missing (or not a directory)."""
        mount = self.mount
        where = write_location(mount.root, segments, mount.symlinks, dotfiles=mount.dotfiles)
        if where is None:
            return _not_found()
        base, names = where
        if not names:
            return is_a_directory()
        if len(os.fsencode(names[-1])) > NAME_MAX_BYTES:
            return _not_found()  # a longer name cannot exist, nor be created
        try:
            fd = open_directory(base, names[:-1])
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            if exc.errno in _REFUSED:
                return _not_found()
            raise
        return WriteTarget(fd, names[-1], os.path.join(os.path.realpath(base), *names))

    def precondition(self, request: Request, current: os.stat_result | None
                     ) -> Response | None:
        if current is None:
            etags: tuple[bytes, ...] = ()
            mtime = None
        else:
            etags = (make_etag(current), make_etag(current, GZ_ETAG_SUFFIX))
            mtime = int(current.st_mtime)
        if write_allowed(request.headers, etags, mtime):
            return None
        return precondition_failed()

    def forget(self, target: WriteTarget, segments: list[str]) -> None:
        """Drop cached gzip copies under the names GET may have used for this file."""
        self.cache.forget(target.path)
        self.cache.forget(os.path.join(self.mount.root, *segments))  # "follow" keys

    def _segments(self, request: Request) -> list[str] | Response:
        raw = request.params.get("path", b"")
        segments = clean_segments(raw, dotfiles=self.mount.dotfiles)
        if segments is None:
            return _not_found()
        if not segments or names_a_directory(raw):
            return is_a_directory()
        return segments


class MountUpload(FileUpload):
    """PUT of one file under a mount: `FileUpload` with the mount's paths and ETags."""

    def __init__(self, writer: MountWriter, request: Request, segments: list[str]) -> None:
        super().__init__(request, writer.report)
        self._writer = writer
        self._segments = segments

    def locate(self) -> WriteTarget | Response:
        target = self._writer.open_target(self._segments)
        if target is None:
            return parent_missing()
        return target

    def precondition(self, target: WriteTarget, current: os.stat_result | None
                     ) -> Response | None:
        return self._writer.precondition(self.request, current)

    def replaced(self, target: WriteTarget) -> None:
        self._writer.forget(target, self._segments)


def _not_found() -> Response:
    return text_response(404, "Not Found\n")
