"""Sending a `StreamBody`: pieces produced in the pool, one in flight, paused by back-pressure.

Strategy: each piece is produced by a pool job; when it comes back it is framed (a chunk, or
raw for a close-delimited HTTP/1.0 body) and written, and the next job starts unless the
transport is over its high-water mark — then `resume()` starts it once the client drained.
A generated gzip stream of a 2 GiB file therefore holds one piece in memory per connection.
The body's `close()` is the app's code too (a WSGI iterable's, a generator's `finally`): it
runs in the pool, exactly once, after the last piece was written or the client left; nothing
is produced after it.
"""

from __future__ import annotations

from collections.abc import Callable

from reactor.app.types import StreamBody
from reactor.loop import EventLoop
from reactor.proto import LAST_CHUNK, encode_chunk


class BodyLengthError(Exception):
    """A streamed body did not match the Content-Length its app announced."""


CloseFailed = Callable[[BaseException], None]
"""Told when a body's `close()` raised (the app's bug; the response itself may be whole)."""


def close_in_pool(loop: EventLoop, body: StreamBody, failed: CloseFailed) -> None:
    """Run `body.close()` on a pool thread: a slow one (a WSGI app's teardown, a generator's
    `finally`) must not stall every other connection on the loop."""
    def closed(_result: object, error: BaseException | None, _started: float) -> None:
        if error is not None:
            failed(error)
    loop.run_in_pool(body.close, (), closed, cleanup=True)


class BodyStreamer:
    """Drives one `StreamBody` to `write`; `done(error)` once it ended (error None: whole)."""

    __slots__ = ("_body", "_chunked", "_close_failed", "_done", "_finished", "_in_flight",
                 "_left", "_loop", "_paused", "_write")

    def __init__(self, loop: EventLoop, body: StreamBody, *, chunked: bool,
                 write: Callable[[bytes], None],
                 done: Callable[[BaseException | None], None],
                 close_failed: CloseFailed,
                 length: int | None = None) -> None:
        self._loop = loop
        self._body = body
        self._close_failed = close_failed
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
            close_in_pool(self._loop, self._body, self._close_failed)

    def _next(self) -> None:
        self._in_flight = True
        self._loop.run_in_pool(self._body.produce, (), self._produced)

    def _produced(self, piece: bytes, error: BaseException | None, _started: float) -> None:
        self._in_flight = False
        if self._finished:  # cancelled while the job ran
            close_in_pool(self._loop, self._body, self._close_failed)
            return
        left = self._left
        if error is None and left is not None and (len(piece) > left or (not piece and left)):
            error = BodyLengthError(f"the body's Content-Length is {left} bytes short"
                                    if not piece else "the body is longer than its"
                                    " Content-Length")
        if error is not None or not piece:
            self._finished = True
            if error is None and self._chunked:
                self._write(LAST_CHUNK)
            self._done(error)
            close_in_pool(self._loop, self._body, self._close_failed)
            return
        if left is not None:
            self._left = left - len(piece)
        self._write(encode_chunk(piece) if self._chunked else piece)
        # the write may have found the peer gone: `cancel` then closed the body already
        if not self._paused and not self._finished:
            self._next()
