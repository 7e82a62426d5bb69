"""The original routes: `/`, `/echo/{s}`, `/user-agent`, and `/files/{name}` under a directory."""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from reactor.app.types import FileBody, Request, Response, text_response

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

    def post(self, request: Request) -> Response:
        if not self.uploads:
            return text_response(405, "Method Not Allowed\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
        path = self._resolve(request.params["name"])
        if path is None:
            return _not_found()
        try:
            write_atomically(path, request.body)
        except IsADirectoryError:
            return text_response(409, "Conflict: the name is a directory\n")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return text_response(507, "Insufficient Storage\n")
            raise
        return Response(201)


def write_atomically(path: str, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it into place.

    Readers see the old file or the new one, never a torn one; on any failure the temp file
    is removed, so an interrupted upload leaves nothing behind.
    """
    directory = os.path.dirname(path)
    # A fixed short prefix: the temp name must fit wherever the final name fits (NAME_MAX).
    fd, temp = tempfile.mkstemp(prefix=".upload-", dir=directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def _not_found() -> Response:
    return text_response(404, "Not Found\n")
