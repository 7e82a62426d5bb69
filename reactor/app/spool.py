"""Spooled request bodies: the `Upload` that writes a body to a `Spool` as it arrives and runs
the app once it is complete, releasing the spool when the response is done with.

Shared by native pooled routes and WSGI apps: both want the whole body (in memory when small,
in an unnamed temporary file past the limit) before the app runs, without ever holding a large
body in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from reactor.app.handlers import (
    StorageReporter,
    file_system_error,
    is_shortage,
    is_storage_full,
    print_error,
    unavailable,
)
from reactor.app.request import Spool
from reactor.app.types import Request, Response, StreamBody, Upload, UploadRefused


class SpoolThenRun(Upload):
    """Spool the body of `request` (memory up to `limit` bytes, then disk), then `run()` —
    on the worker that finishes the upload — with it in `request.body` (small) or
    `request.body_file` (spooled). Out of fds or memory for the spool file, the body is
    refused at once with `handlers.unavailable`'s 503; a full temporary directory with 507
    (`file_system_error`); each reported through `report`."""

    def __init__(self, request: Request, limit: int, run: Callable[[], Response],
                 report: StorageReporter = print_error) -> None:
        self.request = request
        self.limit = limit
        self.run = run
        self.report = report
        self.spool: Spool | None = None

    def start(self) -> Response | None:
        self.spool = Spool(self.limit)
        return None

    def write(self, chunk: bytes) -> None:
        assert self.spool is not None
        try:
            self.spool.write(chunk)
        except OSError as exc:
            # answered now, the rest of the body unread; `abort` closes the spool, and an
            # unnamed file leaves nothing behind
            if is_shortage(exc):  # the temporary file could not be made (EMFILE)
                raise UploadRefused(
                    unavailable(exc, "request body spool", self.request, self.report)) from None
            if is_storage_full(exc):  # the temporary directory is full: 507, one line
                raise UploadRefused(file_system_error(
                    exc, "request body spool", self.request, "spool-failed", self.report)
                ) from None
            raise  # a temporary directory we may not write: the server's fault, traceback

    def finish(self) -> Response:
        spool, self.spool = self.spool, None
        assert spool is not None
        request = self.request
        if spool.in_memory:
            request.body = spool.getvalue()
            spool.close()
            return self.run()
        spool.file.seek(0)
        request.body_file = spool.file
        try:
            response = self.run()
        except BaseException:
            spool.close()
            raise
        return release_after(response, spool.close)

    def abort(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


def release_after(response: Response, release: Callable[[], None]) -> Response:
    """Run `release` now, or, for a streamed body (which may still read what it would
    release, e.g. `wsgi.input`), once the body is done with."""
    body = response.body
    if isinstance(body, StreamBody):
        inner = body.close

        def close() -> None:
            try:
                inner()
            finally:
                release()
        response.body = StreamBody(body.produce, close)
    else:
        release()
    return response
