"""Request and response types shared by the router, middleware, handlers and the connection,
and the app protocol: the one interface through which the connection layer reaches an app."""

from __future__ import annotations

import copy
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, overload, runtime_checkable
from urllib.parse import quote

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from reactor.app.request import Cookies, FormData, QueryParams

_D = TypeVar("_D")  # the type of a `get` default


class Headers:
    """The request's header fields: `(lower-case name, value)` byte pairs in arrival order.

    A linear scan beats building a dict for the handful of fields a request carries. Names
    are case-insensitive; a `str` name gives `str` values (latin-1, as HTTP defines field
    values), a `bytes` name gives bytes: `headers.get("Content-Type")`,
    `headers[b"content-type"]`; `headers[name]` of a missing field raises `MissingHeader`,
    a KeyError the App answers with a 400.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields

    # with a default the value is never None: `headers.get("accept", "*/*")` is a str
    @overload
    def get(self, name: bytes) -> bytes | None: ...
    @overload
    def get(self, name: bytes, default: _D) -> bytes | _D: ...
    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _D) -> str | _D: ...

    def get(self, name: bytes | str, default: Any = None) -> Any:
        if name.__class__ is str:
            key = name.lower().encode("latin-1")
            for field, value in self._fields:
                if field == key:
                    return value.decode("latin-1")
            return default
        for key, value in self._fields:
            if key == name:
                return value
        lowered = name.lower()
        if lowered != name:
            for key, value in self._fields:
                if key == lowered:
                    return value
        return default

    @overload
    def get_all(self, name: bytes) -> list[bytes]: ...
    @overload
    def get_all(self, name: str) -> list[str]: ...

    def get_all(self, name: bytes | str) -> list[Any]:
        if isinstance(name, str):
            key = name.lower().encode("latin-1")
            return [value.decode("latin-1") for field, value in self._fields if field == key]
        key = name.lower()
        return [value for field, value in self._fields if field == key]

    @overload
    def __getitem__(self, name: bytes) -> bytes: ...
    @overload
    def __getitem__(self, name: str) -> str: ...

    def __getitem__(self, name: bytes | str) -> Any:
        value = self.get(name)
        if value is None:
            from reactor.app.request import MissingHeader  # a KeyError; the App's 400
            raise MissingHeader(name)
        return value

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            name = name.lower().encode("latin-1")
        elif isinstance(name, bytes):
            name = name.lower()
        # a loop, not any(genexpr): half the cost, no generator per test (static files and
        # the WSGI adapter ask on every request)
        for key, _value in self._fields:  # noqa: SIM110
            if key == name:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def items(self) -> list[tuple[str, str]]:
        """(name, value) as text, names lower-case, in arrival order."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._fields]

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


_NO_INFO: dict[str, Any] = {}
_MISSING = object()


class Request:
    """One HTTP request as the application sees it. `path` is still percent-encoded.

    `remote_addr`/`remote_port` are the TCP peer; `client_addr` is the client as far as
    the server can tell (the peer, or what a trusted proxy said), and `scheme` is "http"
    or "https" likewise. `conn_info` is the connection's facts (the transport's `extra`:
    TLS version, cipher, SNI, client certificate, PROXY-protocol source), shared by every
    request of the connection: read it, do not change it.
    """

    __slots__ = (
        "_extras", "body", "body_file", "client_addr", "conn_id", "conn_info", "headers",
        "method", "params", "path", "query", "remote_addr", "remote_port", "request_id",
        "request_no", "scheme", "version",
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
        self.params: dict[str, Any] = {}
        # A body too large to hold in memory waits in a file (see the App's spool); then
        # `body` is b"" and `body_file` is that file, positioned at the start.
        self.body_file: BinaryIO | None = None
        self._extras: dict[str, Any] | None = None  # parsed query, cookies, form: on demand

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"

    # ---- conveniences (parsed on first use, see reactor.app.request) ---------------------
    def _cached(self, key: str, make: Callable[[Request], Any]) -> Any:
        extras = self._extras
        if extras is None:
            extras = self._extras = {}
        value = extras.get(key, _MISSING)
        if value is _MISSING:
            value = extras[key] = make(self)
        return value

    @property
    def query_params(self) -> QueryParams:
        """The query string decoded: `q["page"]` (the first value), `q.get_all("tag")`."""
        from reactor.app.request import parse_query
        return self._cached("query", parse_query)

    @property
    def cookies(self) -> Cookies:
        """The request's cookies by name (str to str)."""
        from reactor.app.request import parse_cookies
        return self._cached("cookies", parse_cookies)

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case, parameters dropped ("" when none)."""
        value = self.headers.get(b"content-type") or b""
        return value.split(b";", 1)[0].strip().lower().decode("latin-1")

    @property
    def host(self) -> str:
        return self.headers.get("host") or ""

    @property
    def url(self) -> str:
        """The full URL as the client asked for it (scheme, Host, path, query)."""
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{self.path}{query}"

    def read(self) -> bytes:
        """The whole body as bytes (read from its file when it was spooled to disk)."""
        file = self.body_file
        if file is None:
            return self.body
        position = file.tell()
        file.seek(0)
        data = file.read()
        file.seek(position)
        return data

    def stream(self) -> BinaryIO:
        """The body as a readable binary file, from its start (memory or disk)."""
        file = self.body_file
        if file is None:
            return io.BytesIO(self.body)
        file.seek(0)
        return file

    def body_length(self) -> int:
        file = self.body_file
        if file is None:
            return len(self.body)
        return os.fstat(file.fileno()).st_size

    def text(self) -> str:
        """The body decoded (the Content-Type charset, else UTF-8; bad bytes replaced)."""
        from reactor.app.request import decode_text
        return decode_text(self.read(), self.headers.get(b"content-type"))

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON (RFC 8259) answers 400
        (`HTTPError`): NaN, Infinity and numbers beyond a float's range included, which
        Python's json module would take but JSON cannot carry back."""
        try:
            return json.loads(self.read(), parse_constant=_refuse_constant,
                              parse_float=_finite_float)
        except _NotJSON as exc:
            raise HTTPError(400, str(exc)) from None
        except ValueError:
            raise HTTPError(400, "the body is not valid JSON") from None
        except RecursionError:  # "[[[[..." deeper than the interpreter's stack allows
            raise HTTPError(400, "the body's JSON nests too deeply") from None

    def close_files(self) -> None:
        """Close the files `form()` spooled (the app calls this once the response is done)."""
        extras = self._extras
        form = extras.get("form") if extras is not None else None
        if form is not None:
            form.close()

    def form(self) -> FormData:
        """The form fields of a urlencoded or multipart body (files in `form.files`, spooled
        to disk past a size); another media type answers 415, a malformed body 400."""
        from reactor.app.request import parse_form
        return self._cached("form", parse_form)


class FileTruncated(OSError):
    """A file being sent ended `missing` bytes before the length its answer announced
    (truncated or rewritten meanwhile): the answer is cut short, as the client must see. The
    connection reports it in one warning, `file-truncated` (the file's doing, not a bug: no
    traceback), whether the file went by sendfile or through a gzip stream."""

    def __init__(self, missing: int) -> None:
        super().__init__(f"the file ended {missing} bytes short of the length announced:"
                         " changed while being sent")
        self.missing = missing


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

    `headers` is copied, so a handler may pass the same module-level list every time (and
    `set_cookie` never writes into it). A handler may also return one module-level Response
    to every client: its body is never changed (the gzip form is a copy, `replace`), and the
    fields the server adds (Vary, Strict-Transport-Security) are added to it once.

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
        # a copy: the server adds fields (Vary, HSTS) and a handler may reuse one list
        self.headers = [*headers] if headers else []
        self.body = body
        self.upgrade = upgrade

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"

    def replace(self, *, headers: list[tuple[bytes, bytes]] | None = None,
                body: Body | None = None) -> Response:
        """A copy (of this class) with `headers` and/or `body` replaced; this one unchanged."""
        copied = copy.copy(self)  # ~2 µs, only on the gzip path and a Vary joined to the app's
        if headers is not None:
            copied.headers = headers
        if body is not None:
            copied.body = body
        return copied

    # ---- helpers for handlers ---------------------------------------------------------------
    @classmethod
    def text(cls, text: str, status: int = 200, *, content_type: str = "text/plain",
             headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        """`text` encoded as UTF-8, `Content-Type: text/plain; charset=utf-8`."""
        fields = typed_fields((b"Content-Type",
                               f"{content_type}; charset=utf-8".encode("latin-1")), headers)
        return cls(status, fields, text.encode("utf-8"))

    @classmethod
    def html(cls, html: str, status: int = 200, *,
             headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        return cls.text(html, status, content_type="text/html", headers=headers)

    @classmethod
    def json(cls, value: Any, status: int = 200, *,
             headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        """`value` as compact UTF-8 JSON, `Content-Type: application/json`; strict: a NaN or
        an infinity, which JSON cannot carry, raises ValueError."""
        fields = typed_fields(JSON_TYPE, headers)
        text = _JSON.encode(value)
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate (e.g. from a client's "\ud800", which is valid JSON) has no
            # UTF-8 form: the ASCII escapes carry it as JSON does
            body = _JSON_ASCII.encode(value).encode("ascii")
        return cls(status, fields, body)

    @classmethod
    def binary(cls, data: bytes, status: int = 200, *,
               content_type: str = "application/octet-stream",
               headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        fields = typed_fields((b"Content-Type", content_type.encode("latin-1")), headers)
        return cls(status, fields, data)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        """A redirect (301, 302, 303, 307, 308) to `location`; non-ASCII is percent-encoded."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"{status} is not a redirect status")
        target = quote(location, safe="/:?#[]@!$&'()*+,;=%~-._")
        return cls(status, [(b"Location", target.encode("ascii")), _TEXT_TYPE],
                   f"Redirecting to {target}\n".encode("ascii"))

    @classmethod
    def stream(cls, chunks: Iterable[bytes | str], status: int = 200, *,
               content_type: str = "application/octet-stream",
               headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        """A body sent as `chunks` yields it (chunked), each produced on a worker thread,
        paused while the client is slow; str pieces are encoded as UTF-8. A generator's
        `close()` runs when the body is done with, sent or not (client gone)."""
        fields = typed_fields((b"Content-Type", content_type.encode("latin-1")), headers)
        return cls(status, fields, iter_body(chunks))

    @classmethod
    def file(cls, path: str | os.PathLike[str], *, content_type: str | None = None,
             download_name: str | None = None,
             headers: list[tuple[bytes, bytes]] | None = None) -> FileResponse:
        """The file at `path`, served like a static file: Content-Type by extension,
        ETag/Last-Modified and conditional requests (304, 412), Range (206, 416), large
        files with sendfile. A missing file is a 404. `download_name` adds
        `Content-Disposition: attachment` (a name that is not ASCII as RFC 8187 `filename*`,
        after an ASCII `filename` for clients that read only that one: RFC 6266 appendix
        D). A field in `headers` replaces the file's own of that name (a Content-Type there
        is `content_type`). Resolved by the app when the handler returns."""
        return FileResponse(os.fspath(path), content_type, download_name, headers)

    def set_cookie(self, name: str, value: str = "", *,
                   max_age: int | timedelta | None = None,
                   expires: str | datetime | float | None = None, path: str | None = "/",
                   domain: str | None = None, secure: bool = False, httponly: bool = False,
                   samesite: str | None = "Lax") -> Response:
        """Add a `Set-Cookie` field; returns the response for chaining. A name, value or
        attribute that cannot be sent as it is raises ValueError here, naming it (see
        `reactor.app.request.format_cookie`: a `;` in a path would add attributes)."""
        from reactor.app.request import format_cookie
        self.headers.append((b"Set-Cookie", format_cookie(
            name, value, max_age=max_age, expires=expires, path=path, domain=domain,
            secure=secure, httponly=httponly, samesite=samesite)))
        return self

    def delete_cookie(self, name: str, *, path: str | None = "/",
                      domain: str | None = None, secure: bool = False) -> Response:
        """Expire the cookie `name` set with this `path` and `domain`; `secure` as it was
        set (a `__Secure-`/`__Host-` name always gets Secure: see `set_cookie`)."""
        return self.set_cookie(name, "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT",
                               path=path, domain=domain, secure=secure)


JSON_TYPE = (b"Content-Type", b"application/json")
_TEXT_TYPE = (b"Content-Type", b"text/plain; charset=utf-8")
# Strict JSON (RFC 8259 has no NaN or Infinity; JSON.parse in a browser refuses them): such a
# value is the app's error, a logged 500, not a body its client cannot read.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_JSON_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


class _NotJSON(ValueError):
    """A body Python's json module would take but JSON (RFC 8259) does not; str() is the
    400's reason."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(f"the body's JSON has {name}, which JSON does not allow")


def _finite_float(text: str) -> float:
    # "1e999999" is valid JSON grammar, but a float reads it as inf, which no JSON can carry
    # back (Response.json refuses it): the client's number is out of range, a 400
    value = float(text)
    if math.isinf(value):
        raise _NotJSON("the body's JSON has a number out of range")
    return value



class FileResponse(Response):
    """A file to serve through the static-file path; the app turns it into the real
    response (with the request at hand: validators, ranges) when the handler returns it."""

    __slots__ = ("content_type", "download_name", "path")

    def __init__(self, path: str, content_type: str | None = None,
                 download_name: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(200, headers)
        self.path = path
        self.content_type = content_type
        self.download_name = download_name


def iter_body(chunks: Iterable[bytes | str]) -> StreamBody:
    """A `StreamBody` over an iterable of byte (or str) pieces; empty pieces are skipped
    (an empty piece would end the body), and the iterable's `close()` runs at the end."""
    iterator = iter(chunks)

    def produce() -> bytes:
        for piece in iterator:
            if piece:
                if isinstance(piece, str):
                    return piece.encode("utf-8")
                if isinstance(piece, bytes | bytearray | memoryview):
                    return bytes(piece)
                # bytes(5) would be five NULs on the wire: an app bug ends the stream, logged
                raise TypeError(f"a stream piece is bytes or str, not {type(piece).__name__}")
        return b""

    close = getattr(iterator, "close", None)
    return StreamBody(produce, close if callable(close) else None)


class HTTPError(Exception):
    """Raise in a handler (or middleware) to answer `status` with a short text body, e.g.
    `raise HTTPError(404)` or `HTTPError(400, "page must be a number")`. Not logged."""

    def __init__(self, status: int, detail: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def response(self) -> Response:
        from http import HTTPStatus
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Error"
        text = f"{reason}\n" if self.detail is None else f"{reason}: {self.detail}\n"
        return text_response(self.status, text, self.headers)


class Offload:
    """A handler's answer meaning "finish me on a worker thread": call `fn(*args)` there.

    The result is again a `Response` or an `Offload`. The application layer never sees the
    pool itself; the connection runs the call and resumes on the loop with its result.
    """

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Response | Offload], *args: Any) -> None:
        self.fn = fn
        self.args = args


class UploadRefused(Exception):
    """Raised by `Upload.write` to answer at once with `response` (a 507 for a full disk,
    say): the rest of the body is not read, and the connection closes after the answer.
    The connection still calls `Upload.abort`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


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


def typed_fields(content_type: tuple[bytes, bytes], headers: list[tuple[bytes, bytes]] | None
                 ) -> list[tuple[bytes, bytes]]:
    """A helper's Content-Type and then `headers`, or `headers` alone when they name a
    Content-Type of their own (`application/problem+json` for a JSON body): the app's choice,
    and a response carries one."""
    if not headers:
        return [content_type]
    for name, _value in headers:
        if name.lower() == b"content-type":
            return headers  # the Response copies it
    return [content_type, *headers]


def text_response(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
                  ) -> Response:
    """A short plain-text answer, for errors mostly. A lone surrogate (an `HTTPError`
    naming a client's JSON string "\\ud800") has no UTF-8 form: replaced, not a 500."""
    fields = typed_fields(_TEXT_TYPE, headers)
    return Response(status, fields, text.encode("utf-8", "replace"))


def internal_error(request: Request) -> Response:
    """The 500 for a fault already in the error log: nothing of it for the client but the
    request id, which finds that log line."""
    return text_response(500, f"Internal Server Error\nrequest id: {request.request_id}\n")
