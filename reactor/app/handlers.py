"""The original routes: `/`, `/echo/{s}`, `/user-agent`, and `/files/{name}` under a directory."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import Any, TypeGuard

from reactor.app.newfile import NewFile
from reactor.app.types import (
    FileBody,
    Request,
    Response,
    Upload,
    UploadRefused,
    internal_error,
    text_response,
)

TEXT_PLAIN = (b"Content-Type", b"text/plain")
OCTET_STREAM = (b"Content-Type", b"application/octet-stream")

# Files up to this size are read whole in the worker and sent with the head in one write;
# larger ones go out with sendfile from the loop.
SMALL_FILE_BYTES = 64 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
# open() failures that mean "no such servable file" rather than a server fault.
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
                               errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO})
# The longest file name in bytes (NAME_MAX on Linux file systems); a longer one is a 404.
NAME_MAX_BYTES = 255
DIRECTORY_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECTORY", 0)
# An upload's OS errors that are the file system's state, not a bug: answered with a status
# (nginx's DAV module answers the same) and logged in one line, never with a traceback.
_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # 507
_FORBIDDEN = frozenset({errno.EACCES, errno.EPERM})  # 403
_FILE_SYSTEM_ERRORS = _STORAGE_FULL | _FORBIDDEN | {errno.EROFS}  # EROFS: 500
def is_storage_full(exc: OSError) -> bool:
    """A full disk or quota, or a file grown past its limit (answered 507)."""
    return exc.errno in _STORAGE_FULL


SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
"""OS errors meaning the server is short of a resource right now -- its fd table (EMFILE),
the system's file table (ENFILE), kernel memory (ENOMEM) -- rather than a fault of the
request or the code: answered by `unavailable` (503, one line, no traceback), since a
traceback per request is an error storm exactly when the server can least afford one."""

StorageReporter = Callable[[str, dict[str, Any]], None]
"""`(event, fields)`: where uploads report an expected file-system failure (one line, no
traceback). Called on worker threads; the app routes it to the server's error log."""


def print_error(event: str, fields: dict[str, Any]) -> None:
    """The reporter of a handler used outside a server (tests, scripts): standard error."""
    print(f"reactor: {event} {fields}", file=sys.stderr)


def root(_request: Request) -> Response:
    return Response(200)


def echo(_request: Request, s: bytes) -> Response:
    return Response(200, [TEXT_PLAIN], s)


def user_agent(request: Request) -> Response:
    return Response(200, [TEXT_PLAIN], request.headers.get(b"user-agent") or b"")


class FilesHandler:
    """`GET|POST /files/{name}`: flat files in one directory, never a byte outside it.

    `{name}` arrives percent-decoded. A name is one path segment: no `/`, `\\` or NUL, not
    `.`/`..`, and not a dotfile (an unfinished upload's file is one, when it has a name).
    The resolved path — symlinks followed — must still be inside the directory. Anything
    else is a 404, as if the file did not exist. Both methods block, so the router runs
    them in the pool.
    """

    def __init__(self, directory: str, *, uploads: bool = True,
                 report: StorageReporter = print_error) -> None:
        self.directory = os.path.realpath(directory)
        self.uploads = uploads
        self.report = report

    def _resolve(self, raw_name: bytes) -> str | None:
        """The real path for `raw_name` inside the directory, or None when it must be a 404."""
        if len(raw_name) > NAME_MAX_BYTES:
            return None
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if (not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name):
            return None
        path = os.path.realpath(os.path.join(self.directory, name))
        if os.path.dirname(path) != self.directory:
            return None  # a symlink that leads out (or into a subdirectory)
        return path

    def get(self, request: Request, name: bytes) -> Response:
        path = self._resolve(name)
        if path is None:
            return _not_found()
        try:
            # O_NONBLOCK: opening a FIFO would otherwise wait for a writer, parking a pool
            # thread per request until the whole pool (and every other request) hangs
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in _NOT_FOUND_ERRNOS:
                return _not_found()
            if exc.errno in SHORTAGE_ERRNOS:
                return unavailable(exc, path, request, self.report)
            raise
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(info.st_mode):  # a directory, a FIFO, a device
            os.close(fd)
            return _not_found()
        file = open(fd, "rb", buffering=0)  # noqa: SIM115 - ownership passes to the response
        # (imported here: reactor.app.static imports this module)
        from reactor.app.static.conditional import evaluate, make_etag
        try:
            status = evaluate(request.method, request.headers, make_etag(info),
                              int(info.st_mtime))
            if status is not None:  # /files sends no validators, but If-Match: "x" is a 412
                file.close()
                return precondition_failed() if status == 412 else Response(304)
            size = info.st_size
            if size <= SMALL_FILE_BYTES:
                with file:
                    return Response(200, [OCTET_STREAM], file.read())
            return Response(200, [OCTET_STREAM], FileBody(file, 0, size))
        except BaseException:
            file.close()
            raise

    def upload(self, request: Request, name: bytes) -> Upload | Response:
        """POST or PUT: stream the body into the directory (see `FileUpload`)."""
        if not self.uploads:
            return text_response(405, "Method Not Allowed\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
        return partial_body_refused(request) or _FilesUpload(self, request)

    def delete(self, request: Request, name: bytes) -> Response:
        if not self.uploads:
            return text_response(405, "Method Not Allowed\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
        path = self._resolve(name)
        if path is None:
            return _not_found()
        try:
            current: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            current = None
        refused = _preconditions(request, current)
        if refused is not None:
            return refused
        try:
            if os.path.isdir(path):
                return is_a_directory()
            os.unlink(path)
        except FileNotFoundError:
            return _not_found()
        except OSError as exc:
            return file_system_error(exc, path, request, "delete-failed", self.report)
        return Response(204)


class WriteTarget:
    """Where an upload lands: the plain file `name` in the open directory `dir_fd` (owned,
    closed by `close`); `path` names the same file for the rest of the program."""

    __slots__ = ("dir_fd", "name", "path")

    def __init__(self, dir_fd: int, name: str, path: str) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.path = path

    def lstat(self) -> os.stat_result | None:
        """The name's own status (a symlink is not followed), or None when it is absent."""
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


def partial_body_refused(request: Request) -> Response | None:
    """The 400 for a write whose body is a range of the file (`Content-Range`), at head
    time: RFC 9110 14.5 makes it a MUST for PUT, as partial content "mistakenly PUT as a full
    representation" would replace the file with a piece of it; a POST that writes a whole
    file is refused for the same reason."""
    if b"content-range" in request.headers:
        return text_response(400, "Bad Request: Content-Range on a whole-file write\n")
    return None


class FileUpload(Upload):
    """A body streamed into a new file beside its target (`NewFile`: unnamed where the
    system allows, so even a SIGKILL leaves nothing), fsync'd, then put in place.

    Readers see the old file or the new one, never a torn one; concurrent uploads of one
    name each write their own file and the last rename wins whole. `abort()` (client gone,
    limit, timeout, server stop) closes the file (and removes its temp name, if it has
    one): nothing partial remains. POST answers 201 (the original challenge); PUT answers
    201 when it created the file and 204 when it replaced one; an existing directory is a
    409, anything else that is not a regular file a 404; a write whose directory was
    removed while the body arrived a 409 (`parent_missing`).

    Subclasses say where (`locate`, run in `start`) and on which condition (`precondition`,
    checked in `start` so a refusal costs no body, and again just before the file is put in
    place, since the file may have changed while the body arrived). Every file operation is
    relative to the target's open directory, so nothing swapped into the path after
    `locate` can move the write elsewhere, and a rename replaces a symlink, never writes
    through it. With `If-None-Match: *` the file is put in place with link(2), which fails
    when the name appeared meanwhile: of two racing creators one gets 201, the other 412.
    """

    def __init__(self, request: Request, report: StorageReporter = print_error) -> None:
        self.request = request
        self.report = report
        self._target: WriteTarget | None = None
        self._file: NewFile | None = None

    def locate(self) -> WriteTarget | Response:
        """Blocking: the open target directory and name, or the refusal to send."""
        raise NotImplementedError

    def precondition(self, target: WriteTarget, current: os.stat_result | None
                     ) -> Response | None:
        """The 412 (or other refusal) for the file as it is now (`current`: None if absent)."""
        return None

    def replaced(self, target: WriteTarget) -> None:
        """Called after the new file is in place."""

    def start(self) -> Response | None:
        try:
            found = self.locate()
            if isinstance(found, Response):
                return found
            self._target = found
            refused = self._check(found, found.lstat())
            if refused is not None:
                self._cleanup()
                return refused
            self._file = NewFile(found.dir_fd)
        except OSError as exc:
            return self._file_system_error(exc)
        return None

    def write(self, chunk: bytes) -> None:
        """Write the piece; on a full or failing file system, drop the file at once
        (freeing the space) and answer now (`UploadRefused`): the rest is never read."""
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise UploadRefused(self._file_system_error(exc)) from None

    def finish(self) -> Response:
        target, file = self._target, self._file
        assert target is not None and file is not None
        try:
            file.sync()
            current = target.lstat()
            refused = self._check(target, current)
            if refused is None and not file.publish(
                    target.name, create_only=create_only(self.request)):
                refused = precondition_failed()  # If-None-Match: *, and another PUT won
            if refused is not None:
                self._cleanup()
                return refused
            os.fsync(target.dir_fd)  # the new name itself survives a crash
            self.replaced(target)
        except OSError as exc:
            return self._file_system_error(exc)
        self._cleanup()
        if self.request.method == "PUT" and current is not None:
            return Response(204)
        return Response(201)

    def abort(self) -> None:
        self._cleanup()

    def _file_system_error(self, exc: OSError) -> Response:
        """Clean up, then the answer for an expected OS error, reported in one line with the
        path and errno. Anything else is a fault: re-raised, for the traceback."""
        target = self._target
        path = target.path if target is not None else exc.filename
        gone = (exc.errno == errno.ENOENT and target is not None
                and os.fstat(target.dir_fd).st_nlink == 0)
        self._cleanup()
        if gone:  # the directory was removed while the body arrived: as if it never was
            return parent_missing()
        return file_system_error(exc, path, self.request, "upload-failed", self.report)

    def _check(self, target: WriteTarget, current: os.stat_result | None) -> Response | None:
        if current is not None:
            if stat.S_ISDIR(current.st_mode):
                return is_a_directory()
            if not stat.S_ISREG(current.st_mode):
                return _not_found()  # a symlink swapped in, a FIFO: never replaced
        return self.precondition(target, current)

    def _cleanup(self) -> None:
        if self._file is not None:
            self._file.discard()
            self._file = None
        if self._target is not None:
            self._target.close()
            self._target = None


class _FilesUpload(FileUpload):
    """POST/PUT /files/{name}: the flat directory's name rules, `If-Match: *` only."""

    def __init__(self, handler: FilesHandler, request: Request) -> None:
        super().__init__(request, handler.report)
        self._handler = handler

    def locate(self) -> WriteTarget | Response:
        path = self._handler._resolve(self.request.params["name"])
        if path is None:
            return _not_found()
        try:
            directory = os.open(self._handler.directory, DIRECTORY_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            # The served directory itself is gone: answered as a static mount answers a
            # PUT under a root removed meanwhile (and as when it goes mid-upload).
            return parent_missing()
        return WriteTarget(directory, os.path.basename(path), path)

    def precondition(self, target: WriteTarget, current: os.stat_result | None
                     ) -> Response | None:
        return _preconditions(self.request, current)


def file_system_error(exc: OSError, path: str | None, request: Request, event: str,
                      report: StorageReporter) -> Response:
    """The answer to an expected OS error of a write (full, read-only, forbidden), after one
    `event` line naming path and errno (through `report`); a resource shortage is
    `unavailable`'s 503. Anything else is a fault: re-raised, for the traceback. Call it
    inside the `except` block."""
    code = exc.errno
    if code in SHORTAGE_ERRNOS:
        return unavailable(exc, path, request, report)
    if code not in _FILE_SYSTEM_ERRORS:
        raise exc
    report(event, {
        "path": path, "errno": errno.errorcode.get(code, str(code)), "reason": exc.strerror,
        "request_id": request.request_id, "method": request.method, "target": request.path})
    if code in _STORAGE_FULL:
        return text_response(507, "Insufficient Storage\n")
    if code in _FORBIDDEN:
        return text_response(403, "Forbidden\n")
    return internal_error(request)


def is_shortage(exc: BaseException) -> TypeGuard[OSError]:
    """`exc` is an OSError of a resource shortage (`SHORTAGE_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in SHORTAGE_ERRNOS


def unavailable(exc: OSError, path: str | bytes | int | None, request: Request,
                report: StorageReporter) -> Response:
    """The answer to a resource shortage (`is_shortage(exc)`): one `resource-shortage` line
    naming `path` (what needed the fd or memory; None: unknown) and the errno, through
    `report`, then 503 with `Retry-After: 1`: the condition is the server's and usually
    passes within a second (connections close, cache entries expire), so the client may
    retry; a 500 would call it a fault."""
    code = exc.errno
    assert code is not None
    report("resource-shortage", {
        "path": os.fsdecode(path) if isinstance(path, str | bytes) else None,
        "errno": errno.errorcode.get(code, str(code)), "reason": exc.strerror,
        "request_id": request.request_id, "method": request.method, "target": request.path})
    return text_response(503, "Service Unavailable\n", [(b"Retry-After", b"1")])


def create_only(request: Request) -> bool:
    """`If-None-Match: *`: the write may only create the file (RFC 9110 13.1.2)."""
    value = request.headers.get(b"if-none-match")
    return value is not None and value.strip() == b"*"


def _preconditions(request: Request, current: os.stat_result | None) -> Response | None:
    """RFC 9110 13.2.2 steps 1-3 for a write to /files: `If-Match: *` needs the file, any
    other tag never matches (/files sends no ETags), `If-None-Match: *` needs it absent, and
    `If-Unmodified-Since` (without If-Match) refuses a file changed since that date."""
    from reactor.app.static.conditional import make_etag, write_allowed
    if current is None:
        allowed = write_allowed(request.headers, (), None)
    else:
        allowed = write_allowed(request.headers, (make_etag(current),),
                                int(current.st_mtime))
    return None if allowed else precondition_failed()


def is_a_directory() -> Response:
    return text_response(409, "Conflict: the name is a directory\n")


def parent_missing() -> Response:
    """A write into a directory that does not exist (or no longer does): 409, as WebDAV
    answers a PUT whose parent is missing (RFC 4918 9.7.1)."""
    return text_response(409, "Conflict: the parent directory does not exist\n")


def precondition_failed() -> Response:
    return text_response(412, "Precondition Failed\n")


def _not_found() -> Response:
    return text_response(404, "Not Found\n")
