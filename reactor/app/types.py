"""Request and response types shared by the router, middleware, handlers and the connection,
and the app protocol: the one interface through which the connection layer reaches an app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol, runtime_checkable


class Headers:
    """The request's header fields: `(lower-case name, value)` byte pairs in arrival order.

    A linear scan beats building a dict for the handful of fields a request carries.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        for key, value in self._fields:
            if key == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self._fields if key == name]

    def __contains__(self, name: bytes) -> bool:
        return any(key == name for key, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


_NO_INFO: dict[str, Any] = {}


class Request:
    """One HTTP request as the application sees it. `path` is still percent-encoded.

    `remote_addr`/`remote_port` are the TCP peer; `client_addr` is the client as far as
    the server can tell (the peer, or what a trusted proxy said), and `scheme` is "http"
    or "https" likewise. `conn_info` is the connection's facts (the transport's `extra`:
    TLS version, cipher, SNI, client certificate, PROXY-protocol source), shared by every
    request of the connection: read it, do not change it.
    """

    __slots__ = (
        "body", "client_addr", "conn_id", "conn_info", "headers", "method", "params", "path",
        "query", "remote_addr", "remote_port", "request_id", "request_no", "scheme", "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        version: str,
        headers: Headers,
        body: bytes = b"",
        *,
        remote_addr: str = "",
        remote_port: int = 0,
        conn_id: int = 0,
        request_no: int = 1,
        request_id: str = "",
        scheme: str = "http",
        client_addr: str | None = None,
        conn_info: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.conn_id = conn_id
        self.request_no = request_no
        self.request_id = request_id
        self.scheme = scheme
        self.client_addr = remote_addr if client_addr is None else client_addr
        self.conn_info = _NO_INFO if conn_info is None else conn_info
        self.params: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


class FileBody:
    """A byte range of an open file, sent by the connection (with `os.sendfile` when it can).

    The connection owns the file from the moment the response is handed over, and closes it.
    """

    __slots__ = ("file", "length", "offset")

    def __init__(self, file: BinaryIO, offset: int, length: int) -> None:
        self.file = file
        self.offset = offset
        self.length = length

    def close(self) -> None:
        self.file.close()


class PartsBody:
    """A body made of byte strings and file ranges sent in order (multipart/byteranges).

    The connection owns the files once the response is handed over, and closes them.
    """

    __slots__ = ("length", "parts")

    def __init__(self, parts: list[bytes | FileBody]) -> None:
        self.parts = parts
        self.length = sum(p.length if isinstance(p, FileBody) else len(p) for p in parts)

    def close(self) -> None:
        for part in self.parts:
            if isinstance(part, FileBody):
                part.close()


class StreamBody:
    """A body of unknown length, produced piece by piece on a worker thread.

    `produce()` returns the next piece, or b"" at the end; the connection calls it with one
    call in flight, pausing while the client is slow (so memory stays flat), and frames the
    pieces with chunked transfer coding (HTTP/1.1) or by closing the connection (HTTP/1.0).
    `close()` runs once when the body is done with, sent or not.
    """

    __slots__ = ("close", "produce")

    def __init__(self, produce: Callable[[], bytes],
                 close: Callable[[], None] | None = None) -> None:
        self.produce = produce
        self.close = close if close is not None else _nothing


def _nothing() -> None:
    return None


Body = bytes | FileBody | PartsBody | StreamBody


class Response:
    """Status, extra header fields and a body. The connection adds framing, Date and Server.

    Framing fields the app sets are reconciled by the connection's serializer: a
    `Content-Length` is checked against the body (or announces a stream's length), never sent
    twice; hop-by-hop fields are the connection's. A `101` response carries in `upgrade` a
    factory of the protocol that takes the connection over once the head is sent (the factory
    is called on the loop with no arguments and returns a connection-layer protocol).
    """

    __slots__ = ("body", "headers", "status", "upgrade")

    def __init__(
        self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None,
        body: Body = b"", *, upgrade: Callable[[], Any] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.upgrade = upgrade

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class Offload:
    """A handler's answer meaning "finish me on a worker thread": call `fn(*args)` there.

    The result is again a `Response` or an `Offload`. The application layer never sees the
    pool itself; the connection runs the call and resumes on the loop with its result.
    """

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Response | Offload], *args: Any) -> None:
        self.fn = fn
        self.args = args


class Upload:
    """Consumes a request body as it arrives, instead of the connection buffering it.

    A route registered with `stream=True` answers at head time (on the loop, so cheaply)
    with an `Upload`, or with a `Response` to refuse before any body is read. The
    connection then calls, one at a time and each on a worker thread: `start()` once (may
    return a `Response` to refuse: the body is then discarded), `write(chunk)` for each
    piece of the body, and `finish()` for the final `Response` — or `abort()` instead of
    `finish()` when the body never completes (client gone, timeout, limit, server stop).
    `abort()` must leave nothing behind.
    """

    def start(self) -> Response | None:
        return None

    def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> Response:
        raise NotImplementedError

    def abort(self) -> None:
        return None


Handler = Callable[[Request], "Response | Offload"]
UploadHandler = Callable[[Request], "Upload | Response"]
"""A stream route's handler: called at head time, it answers an Upload or refuses at once."""


class Dispatch(Protocol):
    """One request's way through an app, its route resolved once (see `Application.open`).

    The connection asks it, on the loop thread:
    - `begin()` when the head of a request with a body has arrived: an `Upload` to stream the
      body into, a `Response` to refuse before reading it, or None to have the connection
      buffer the body into `request.body`;
    - `respond()` at the end of the message (body buffered): the response, or an `Offload`
      whose continuation runs in the pool and again answers a `Response` or an `Offload`;
    - `complete(response)` for a response made outside `respond()` (what an `Upload`
      finished or refused with), so that it passes the app's middleware like any other.
    Every response reaches the connection through exactly one of `respond` and `complete`,
    having passed the middleware once, whether it was made inline or in the pool.
    """

    def begin(self) -> Upload | Response | None: ...
    def respond(self) -> Response | Offload: ...
    def complete(self, response: Response) -> Response | Offload: ...


@runtime_checkable
class Application(Protocol):
    """What the connection layer serves: `open(request)` at head time, once per request."""

    def open(self, request: Request) -> Dispatch: ...


class FunctionApp:
    """A plain `fn(request) -> Response | Offload` served as an `Application`.

    Bodies are buffered for it (`request.body`); it has no middleware.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Handler) -> None:
        self.fn = fn

    def open(self, request: Request) -> Dispatch:
        return _FunctionDispatch(self.fn, request)


class _FunctionDispatch:
    __slots__ = ("fn", "request")

    def __init__(self, fn: Handler, request: Request) -> None:
        self.fn = fn
        self.request = request

    def begin(self) -> Upload | Response | None:
        return None

    def respond(self) -> Response | Offload:
        return self.fn(self.request)

    def complete(self, response: Response) -> Response | Offload:
        return response


def as_application(app: Application | Handler) -> Application:
    """`app` itself when it has `open`, else a plain handler function wrapped."""
    if isinstance(app, Application):
        return app
    return FunctionApp(app)


def text_response(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
                  ) -> Response:
    """A short plain-text answer, for errors mostly."""
    fields = [(b"Content-Type", b"text/plain; charset=utf-8")]
    if headers:
        fields.extend(headers)
    return Response(status, fields, text.encode())
