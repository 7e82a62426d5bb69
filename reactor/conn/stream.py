"""Sending a `StreamBody`: pieces produced in the pool, one in flight, paused by back-pressure.

Strategy: each piece is produced by a pool job; when it comes back it is framed (a chunk, or
raw for a close-delimited HTTP/1.0 body) and written, and the next job starts unless the
transport is over its high-water mark — then `resume()` starts it once the client drained.
A generated gzip stream of a 2 GiB file therefore holds one piece in memory per connection.
"""

from __future__ import annotations

from collections.abc import Callable

from reactor.app.types import StreamBody
from reactor.loop import EventLoop
from reactor.proto import LAST_CHUNK, encode_chunk


class BodyLengthError(Exception):
    """A streamed body did not match the Content-Length its app announced."""


class BodyStreamer:
    """Drives one `StreamBody` to `write`; `done(error)` once it ended (error None: whole)."""

    __slots__ = ("_body", "_chunked", "_done", "_finished", "_in_flight", "_left", "_loop",
                 "_paused", "_write")

    def __init__(self, loop: EventLoop, body: StreamBody, *, chunked: bool,
                 write: Callable[[bytes], None],
                 done: Callable[[BaseException | None], None],
                 length: int | None = None) -> None:
        self._loop = loop
        self._body = body
        self._chunked = chunked
        # With a Content-Length announced by the app, the pieces must add up to it exactly:
        # more would be read as the next response, fewer would leave the client waiting.
        self._left = length
        self._write = write
        self._done = done
        self._paused = False
        self._in_flight = False
        self._finished = False
        self._next()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if not self._in_flight and not self._finished:
            self._next()

    def cancel(self) -> None:
        """The connection is gone: stop producing; close the body once no job runs."""
        if self._finished:
            return
        self._finished = True
        if not self._in_flight:
            self._body.close()

    def _next(self) -> None:
        self._in_flight = True
        self._loop.run_in_pool(self._body.produce, (), self._produced)

    def _produced(self, piece: bytes, error: BaseException | None, _started: float) -> None:
        self._in_flight = False
        if self._finished:  # cancelled while the job ran
            self._body.close()
            return
        left = self._left
        if error is None and left is not None and (len(piece) > left or (not piece and left)):
            error = BodyLengthError(f"the body's Content-Length is {left} bytes short"
                                    if not piece else "the body is longer than its"
                                    " Content-Length")
        if error is not None or not piece:
            self._finished = True
            self._body.close()
            if error is None and self._chunked:
                self._write(LAST_CHUNK)
            self._done(error)
            return
        if left is not None:
            self._left = left - len(piece)
        self._write(encode_chunk(piece) if self._chunked else piece)
        if not self._paused:
            self._next()
