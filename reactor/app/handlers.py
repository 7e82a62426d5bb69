"""The original routes: `/`, `/echo/{s}`, `/user-agent`, and `/files/{name}` under a directory."""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from reactor.app.types import FileBody, Request, Response, Upload, text_response

TEXT_PLAIN = (b"Content-Type", b"text/plain")
OCTET_STREAM = (b"Content-Type", b"application/octet-stream")

# Files up to this size are read whole in the worker and sent with the head in one write;
# larger ones go out with sendfile from the loop.
SMALL_FILE_BYTES = 64 * 1024
# open() failures that mean "no such servable file" rather than a server fault.
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
                               errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO})


def root(_request: Request) -> Response:
    return Response(200)


def echo(request: Request) -> Response:
    return Response(200, [TEXT_PLAIN], request.params["s"])


def user_agent(request: Request) -> Response:
    return Response(200, [TEXT_PLAIN], request.headers.get(b"user-agent", b""))


class FilesHandler:
    """`GET|POST /files/{name}`: flat files in one directory, never a byte outside it.

    `{name}` arrives percent-decoded. A name is one path segment: no `/`, `\\` or NUL, not
    `.`/`..`, and not a dotfile (in-progress uploads are dotfiles). The resolved path —
    symlinks followed — must still be inside the directory. Anything else is a 404, as if
    the file did not exist. Both methods block, so the router runs them in the pool.
    """

    def __init__(self, directory: str, *, uploads: bool = True) -> None:
        self.directory = os.path.realpath(directory)
        self.uploads = uploads

    def _resolve(self, raw_name: bytes) -> str | None:
        """The real path for `raw_name` inside the directory, or None when it must be a 404."""
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

    def get(self, request: Request) -> Response:
        path = self._resolve(request.params["name"])
        if path is None:
            return _not_found()
        try:
            file = open(path, "rb")  # noqa: SIM115 - ownership passes to the response
        except OSError as exc:
            if exc.errno in _NOT_FOUND_ERRNOS:
                return _not_found()
            raise
        try:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                file.close()
                return _not_found()
            size = info.st_size
            if size <= SMALL_FILE_BYTES:
                with file:
                    return Response(200, [OCTET_STREAM], file.read())
            return Response(200, [OCTET_STREAM], FileBody(file, 0, size))
        except BaseException:
            file.close()
            raise

    def upload(self, request: Request) -> Upload | Response:
        """POST or PUT: stream the body into the directory (see `FileUpload`)."""
        if not self.uploads:
            return text_response(405, "Method Not Allowed\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
        return FileUpload(self, request)

    def delete(self, request: Request) -> Response:
        if not self.uploads:
            return text_response(405, "Method Not Allowed\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
        path = self._resolve(request.params["name"])
        if path is None:
            return _not_found()
        refused = _preconditions(request, path)
        if refused is not None:
            return refused
        try:
            if os.path.isdir(path):
                return text_response(409, "Conflict: the name is a directory\n")
            os.unlink(path)
        except FileNotFoundError:
            return _not_found()
        return Response(204)


class FileUpload(Upload):
    """A body streamed into a temp file beside its target, fsync'd, then renamed into place.

    Readers see the old file or the new one, never a torn one; concurrent uploads of one
    name each write their own temp file and the last rename wins whole. `abort()` (client
    gone, limit, timeout, server stop) removes the temp file: nothing partial remains.
    POST answers 201 (the original challenge); PUT answers 201 when it created the file and
    204 when it replaced one. `If-Match` / `If-None-Match: *` make either conditional (412).
    """

    __slots__ = ("_fd", "_handler", "_path", "_request", "_temp")

    def __init__(self, handler: FilesHandler, request: Request) -> None:
        self._handler = handler
        self._request = request
        self._path: str | None = None
        self._fd = -1
        self._temp = ""

    def start(self) -> Response | None:
        path = self._handler._resolve(self._request.params["name"])
        if path is None:
            return _not_found()
        if os.path.isdir(path):
            return text_response(409, "Conflict: the name is a directory\n")
        refused = _preconditions(self._request, path)
        if refused is not None:
            return refused
        self._path = path
        # A fixed short prefix: the temp name must fit wherever the final name fits (NAME_MAX).
        self._fd, self._temp = tempfile.mkstemp(prefix=".upload-", dir=os.path.dirname(path))
        return None

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view):]

    def finish(self) -> Response:
        assert self._path is not None
        try:
            os.fsync(self._fd)
            os.fchmod(self._fd, 0o644 & ~_current_umask())
            os.close(self._fd)
            self._fd = -1
            existed = os.path.exists(self._path)
            if os.path.isdir(self._path):
                raise IsADirectoryError(errno.EISDIR, "is a directory", self._path)
            os.replace(self._temp, self._path)
            self._temp = ""
        except IsADirectoryError:
            self.abort()
            return text_response(409, "Conflict: the name is a directory\n")
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return text_response(507, "Insufficient Storage\n")
            raise
        if self._request.method == "PUT" and existed:
            return Response(204)
        return Response(201)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._temp:
            try:
                os.unlink(self._temp)
            except FileNotFoundError:
                pass
            self._temp = ""


def _preconditions(request: Request, path: str) -> Response | None:
    """RFC 9110 13.1.1-2 for writes: `If-Match` needs the file to exist (any tag but `*`
    never matches here: /files serves no ETags), `If-None-Match: *` needs it absent."""
    if_match = request.headers.get(b"if-match")
    exists = os.path.exists(path)
    if if_match is not None and (not exists or if_match.strip() != b"*"):
        return text_response(412, "Precondition Failed\n")
    if_none_match = request.headers.get(b"if-none-match")
    if if_none_match is not None and if_none_match.strip() == b"*" and exists:
        return text_response(412, "Precondition Failed\n")
    return None


_umask_cache: list[int] = []


def _current_umask() -> int:
    # os.umask can only be read by setting it; do it once (it is process-wide and fixed
    # after start-up), so worker threads never race on it.
    if not _umask_cache:
        mask = os.umask(0o022)
        os.umask(mask)
        _umask_cache.append(mask)
    return _umask_cache[0]


def _not_found() -> Response:
    return text_response(404, "Not Found\n")
